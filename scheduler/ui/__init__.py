"""`initsweep ui`: a local, read-only web dashboard over the results database.

`app` (routes, JSON endpoints), `data` (per-sweep caches kept current while sweeps run),
`table` (results as columns: server-side filtering, sorting, paging), `views` (plot data),
`pages` (HTML shells) and `static/` (app.js, app.css; plotly.min.js comes from the plotly
package). Nothing is fetched from the internet and nothing is built: the pages are plain files.
"""

from __future__ import annotations

from scheduler.ui.app import create_app

__all__ = ["create_app"]
