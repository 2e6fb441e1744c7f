"""The dashboard's HTML pages: a shell each, filled in by static/app.js from the JSON endpoints.

No inline script (the Content-Security-Policy allows scripts from the server only): what a page
needs to know (its kind, the sweep ids, the refresh interval) rides in data- attributes.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

__all__ = ["compare_page", "error_page", "sweep_page", "sweeps_page"]

ACTIVE = ' class="active" aria-current="page"'


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _shell(
    title: str,
    kind: str,
    body: str,
    *,
    database: str,
    data: Mapping[str, str] | None = None,
    plots: bool = False,
) -> str:
    attrs = "".join(f' data-{_e(k)}="{_e(v)}"' for k, v in {"page": kind, **(data or {})}.items())
    scripts = '<script src="/static/plotly.min.js"></script>' if plots else ""
    active = "sweeps" if kind in ("sweeps", "sweep") else kind
    links = "".join(
        f'<a href="{href}"{ACTIVE if key == active else ""}>{text}</a>'
        for key, href, text in (("sweeps", "/", "Sweeps"), ("compare", "/compare", "Compare"))
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · initsweep</title>"
        '<link rel="icon" href="data:,">'
        '<link rel="stylesheet" href="/static/app.css">'
        f"{scripts}"
        '<script src="/static/app.js" defer></script>'
        "</head>\n"
        f"<body{attrs}>"
        '<header class="top"><a class="brand" href="/">initsweep</a>'
        f'<nav>{links}</nav><span class="db" title="database (read-only)">{_e(database)}</span>'
        "</header>\n"
        f'<main>{body}<div id="error" class="error" hidden></div></main>\n'
        "</body></html>\n"
    )


def sweeps_page(*, database: str, poll_s: float) -> str:
    """The list of sweeps with their live progress."""
    body = (
        '<div class="head"><h1>Sweeps</h1>'
        '<p class="sub" id="updated">loading…</p></div>'
        '<div class="toolbar"><button id="compare-selected" disabled>Compare selected</button>'
        '<span class="muted small">tick two or more sweeps to compare them side by side</span>'
        "</div>"
        '<div id="sweeps" class="card flush"><p class="muted pad">loading…</p></div>'
    )
    return _shell("Sweeps", "sweeps", body, database=database, data={"poll": f"{poll_s:g}"})


def sweep_page(*, sweep_id: int, name: str, database: str, poll_s: float) -> str:
    """One sweep: progress, plots, results table, spec and provenance."""
    body = f"""
<div class="head"><h1>sweep {sweep_id} · {_e(name)} <span id="status" class="pill"></span></h1>
<p class="sub" id="subtitle">loading…</p></div>
<section class="card" id="progress-card"><div id="progress"></div></section>
<section class="card" id="failures-card" hidden><h2>Failures</h2><div id="failures"></div></section>
<section class="card filter-card">
  <form id="filter-form" class="filter" autocomplete="off">
    <label for="filter">Filter</label>
    <input id="filter" name="where" spellcheck="false"
      placeholder="e.g. activation=tanh,relu width>=256 init=he_normal">
    <button type="submit">Apply</button><button type="button" id="filter-clear">Clear</button>
  </form>
  <p class="hint">Space-separated terms <code>column op value</code>; op one of
  <code>= != &lt; &lt;= &gt; &gt;= ~</code> (contains); lists with commas; <code>layer=last</code>.
  Applies to the plots and the table. <span id="filter-columns"></span></p>
</section>
<section class="card"><div class="card-head"><h2>Per-layer statistics</h2>
  <div class="controls"><label>statistic <select id="stat">
    <option value="std">std over units</option><option value="mean_sq">mean_sq</option>
    <option value="mean">mean</option></select></label>
  <label>lines <select id="max-lines"><option>10</option><option selected>20</option>
    <option>50</option><option>100</option></select></label></div></div>
  <p class="note" id="layers-note"></p>
  <div id="layers-plot" class="plot"></div>
  <p class="legend-note">Lines: Monte Carlo estimate (mean over trials); bands: ±2 standard
  errors; dashed black: mean-field theory (Poole et al. 2016; Schoenholz et al. 2017); dotted:
  censored layers (some trials non-finite or collapsed to 0).</p>
</section>
<section class="card" id="check-card"><h2>Theory check</h2>
  <p id="check-summary" class="muted">loading…</p><div id="check" class="table-wrap scroll"></div></section>
<section class="card"><h2>Overflow and collapse</h2><p class="note" id="explosion-note"></p>
  <div id="explosion-plot" class="plot"></div></section>
<section class="card" id="phase-card" hidden><h2>Order-to-chaos phase diagram</h2>
  <p class="note" id="phase-note"></p><div id="phase-plot" class="plot"></div></section>
<section class="card flush"><div class="card-head pad"><h2>Results</h2>
  <div class="controls">
  <label>quantity <select id="quantity"><option value="">all</option>
    <option value="activation" selected>activation</option><option value="gradient">gradient</option>
    <option value="preactivation">preactivation</option></select></label>
  <label>layer <select id="layer"><option value="">all</option>
    <option value="last" selected>last</option><option value="1">1</option></select></label>
  <label>rows <select id="page-size"><option>25</option><option selected>50</option>
    <option>100</option><option>250</option></select></label></div></div>
  <div id="results" class="table-wrap"></div>
  <div class="pager pad"><span id="page-info"></span>
    <button id="prev" disabled>‹ previous</button><button id="next" disabled>next ›</button></div>
</section>
<div class="two">
<section class="card"><h2>Spec</h2><pre id="spec"></pre></section>
<section class="card"><h2>Provenance</h2><dl id="provenance" class="kv"></dl></section>
</div>"""
    return _shell(
        f"sweep {sweep_id} · {name}",
        "sweep",
        body,
        database=database,
        data={"sweep": str(sweep_id), "poll": f"{poll_s:g}"},
        plots=True,
    )


def compare_page(*, sweep_ids: Sequence[int], database: str, poll_s: float) -> str:
    """Two or more sweeps side by side (a picker when none are named)."""
    ids = ",".join(str(i) for i in sweep_ids)
    title = f"Compare sweeps {', '.join(map(str, sweep_ids))}" if sweep_ids else "Compare sweeps"
    body = f"""
<div class="head"><h1>{_e(title)}</h1><p class="sub" id="subtitle"></p></div>
<section class="card" id="picker" hidden><h2>Choose sweeps</h2><div id="picker-list"></div>
  <button id="picker-go" disabled>Compare</button></section>
<div id="compare-body" hidden>
<section class="card flush"><div id="compare-summary" class="table-wrap"></div></section>
<section class="card"><div class="card-head"><h2>Per-layer statistics, side by side</h2>
  <div class="controls"><label>statistic <select id="stat">
    <option value="std">std over units</option><option value="mean_sq">mean_sq</option>
    <option value="mean">mean</option></select></label>
  <label>filter <input id="filter" spellcheck="false" placeholder="e.g. activation=tanh"></label>
  </div></div>
  <div id="compare-plots" class="columns"></div>
  <p class="legend-note">Same axes in every column. Lines: Monte Carlo; bands: ±2 SE; dashed
  black: mean-field theory.</p></section>
<section class="card flush"><div class="pad"><h2>Configurations in more than one sweep</h2>
  <p class="note" id="matched-note"></p></div><div id="matched" class="table-wrap"></div></section>
</div>"""
    return _shell(
        title,
        "compare",
        body,
        database=database,
        data={"sweeps": ids, "poll": f"{poll_s:g}"},
        plots=True,
    )


def error_page(*, status: int, message: str, database: str) -> str:
    """A page for a request that failed (unknown sweep, bad parameter, database down)."""
    body = (
        f'<div class="head"><h1>{status}</h1></div>'
        f'<section class="card"><p>{_e(message)}</p><p><a href="/">All sweeps</a></p></section>'
    )
    return _shell(str(status), "error", body, database=database)
