"""The dashboard's web application (Starlette): three pages, their JSON endpoints, static files.

Read-only by construction: every route is GET, and the session factory it is given is opened
read-only (`scheduler.database.open_database(..., read_only=True)`). Pages are shells that
static/app.js fills from these endpoints and refreshes every `poll_s` seconds:

    GET /                                   the sweeps and their live progress
    GET /sweeps/{id}                        one sweep
    GET /compare?ids=1,2                    two or more sweeps side by side
    GET /api/sweeps                         progress of every sweep, with its latest failures
    GET /api/sweeps/{id}                    spec, provenance, progress, failures, results summary
    GET /api/sweeps/{id}/progress           progress, failures and the results version (polled)
    GET /api/sweeps/{id}/results            ?offset=&limit=&where=&sort=  one page of records
    GET /api/sweeps/{id}/layers             ?stat=&where=&quantities=&max_lines=
    GET /api/sweeps/{id}/explosion          ?where=&max_rows=
    GET /api/sweeps/{id}/phase              ?where=
    GET /api/compare                        ?ids=1,2&stat=&where=&max_lines=
    GET /static/plotly.min.js               from the installed plotly package (never a CDN)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from models.errors import StoreError
from scheduler.analysis.theory import ConfigTheory
from scheduler.errors import InitsweepError, RuntimeFailure, UnknownSweepError, UserError
from scheduler.formatting import clock, duration
from scheduler.query import SweepProgress, sweep_progress, sweep_provenance
from scheduler.store import SweepInfo, get_sweep, list_sweeps
from scheduler.ui import pages, views
from scheduler.ui.data import Dashboard, sweep_failures

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["create_app", "plotly_js"]

MAX_COMPARE = 6
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'"
    ),
}


def plotly_js() -> Path:
    """plotly.min.js as shipped inside the installed `plotly` Python package."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _clean(value: Any) -> Any:
    """JSON-ready: NaN and infinities become null, datetimes ISO 8601 (UTC), tuples lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, datetime):
        return _utc(value).isoformat()
    return value


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _when(t: datetime | None) -> str:
    return _utc(t).strftime("%Y-%m-%d %H:%M:%S UTC") if t is not None else "—"


class _JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(
            _clean(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode("utf-8")


def _int(request: Request, name: str, default: int, lo: int = 0, hi: int = 10**9) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UserError(f"{name}: expected an integer. Received: {raw!r}") from None
    if not lo <= value <= hi:
        raise UserError(f"{name}: expected an integer in [{lo}, {hi}]. Received: {value}")
    return value


def _ids(raw: str | None) -> list[int]:
    ids: list[int] = []
    for part in (raw or "").replace(" ", ",").split(","):
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise UserError(f"ids: expected sweep ids such as 1,2. Received: {part!r}") from None
        if value not in ids:
            ids.append(value)
    return ids


def _rate(p: SweepProgress) -> str:
    """Trials/s over the time the sweep ran (`SweepProgress.rate`); — before any trial."""
    if p.rate is None:
        return "—"
    return f"{p.rate:.2g}" if p.rate < 10 else f"{p.rate:,.0f}"


def _progress(p: SweepProgress, info: SweepInfo | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": p.sweep_id,
        "name": p.name,
        "status": p.status,
        "finished": p.finished,
        "counts": p.counts,
        "n_chunks": sum(p.counts.values()),
        "trials_done": p.trials_done,
        "trials_total": p.trials_total,
        "rate": p.rate,
        "rate_label": _rate(p),
        "eta_s": p.eta_s,
        "eta_label": clock(p.eta_s),
        "workers": list(p.workers),
    }
    if info is not None:
        out.update(
            n_configs=info.n_configs,
            seed=info.seed,
            created_at=info.created_at,
            created=_when(info.created_at),
            finished_at=info.finished_at,
        )
    return out


def _counts(values: Mapping[str, int]) -> str:
    return ", ".join(f"{k} ({n})" for k, n in values.items()) or "—"


def _provenance(session: Session, info: SweepInfo) -> list[list[str]]:
    prov = sweep_provenance(session=session, sweep_id=info.id)
    wall = None
    if prov.first_started is not None and prov.last_finished is not None:
        wall = (_utc(prov.last_finished) - _utc(prov.first_started)).total_seconds()
    return [
        ["chunks", f"{prov.n_chunks} ({_counts(prov.status_counts)})"],
        ["TensorFlow", _counts(prov.tf_versions)],
        ["devices", _counts(prov.devices)],
        ["samplers", _counts(prov.samplers)],
        ["dtypes", _counts(prov.dtypes)],
        ["workers", _counts(prov.workers)],
        ["attempts", str(prov.attempts_total)],
        [
            "chunk durations",
            f"total {duration(prov.duration_total_s)}, mean {duration(prov.duration_mean_s)}",
        ],
        ["wall time", f"{duration(wall)} (first chunk start to last chunk end)"],
        ["created", _when(info.created_at)],
        ["first chunk started", _when(prov.first_started)],
        ["last chunk finished", _when(prov.last_finished)],
        ["finished", _when(info.finished_at)],
    ]


def create_app(
    factory: Callable[[], Session],
    *,
    database: str = "",
    poll_s: float = 3.0,
    allowed_hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    predictor: Callable[[Any], ConfigTheory] | None = None,
) -> Starlette:
    """The dashboard over `factory`'s database (`database`: its URL as shown, password hidden)."""
    dash = Dashboard(factory, predictor=predictor)

    def page(html: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    def data(content: Any) -> _JSON:
        return _JSON(content, headers={**_HEADERS, "Cache-Control": "no-store"})

    # ------------------------------------------------------------------------ pages

    def sweeps_html(request: Request) -> Response:
        return page(pages.sweeps_page(database=database, poll_s=poll_s))

    def sweep_html(request: Request) -> Response:
        sweep_id = int(request.path_params["sweep_id"])
        with dash.session() as session:
            info = get_sweep(session=session, sweep_id=sweep_id)
        return page(
            pages.sweep_page(sweep_id=sweep_id, name=info.name, database=database, poll_s=poll_s)
        )

    def compare_html(request: Request) -> Response:
        ids = _ids(request.query_params.get("ids"))
        return page(pages.compare_page(sweep_ids=ids, database=database, poll_s=poll_s))

    # ------------------------------------------------------------------------- JSON

    def api_sweeps(request: Request) -> Response:
        with dash.session() as session:
            infos = {i.id: i for i in list_sweeps(session=session)}
            progress = sweep_progress(session=session)
            failures = sweep_failures(session=session, sweep_ids=list(infos), per_sweep=5)
        rows = []
        for p in reversed(progress):  # newest first
            row = _progress(p, infos.get(p.sweep_id))
            row["failures"] = failures.get(p.sweep_id, [])
            rows.append(row)
        return data({"sweeps": rows, "database": database, "now": datetime.now(UTC)})

    def _sweep_progress(session: Session, sweep_id: int) -> dict[str, Any]:
        info = get_sweep(session=session, sweep_id=sweep_id)
        (p,) = sweep_progress(session=session, sweep_id=sweep_id)
        table, version = dash.results(session, sweep_id)
        _, report = dash.check(session, sweep_id)
        return {
            "sweep": _progress(p, info),
            "check": views.check_summary(report, table),
            "failures": sweep_failures(session=session, sweep_ids=[sweep_id], per_sweep=50).get(
                sweep_id, []
            ),
            "version": version,
            "results": views.summary(table),
        }

    def api_sweep(request: Request) -> Response:
        sweep_id = int(request.path_params["sweep_id"])
        with dash.session() as session:
            out = _sweep_progress(session, sweep_id)
            info = get_sweep(session=session, sweep_id=sweep_id)
            out["spec_yaml"] = info.spec_yaml
            out["provenance"] = _provenance(session, info)
        return data(out)

    def api_progress(request: Request) -> Response:
        with dash.session() as session:
            return data(_sweep_progress(session, int(request.path_params["sweep_id"])))

    def _table(request: Request) -> tuple[Any, int]:
        with dash.session() as session:
            return dash.results(session, int(request.path_params["sweep_id"]))

    def api_results(request: Request) -> Response:
        table, version = _table(request)
        q = request.query_params
        sort = [s for s in (q.get("sort") or "").split(",") if s.strip()]
        out = table.page(
            where=q.get("where"),
            sort=[s.strip() for s in sort],
            offset=_int(request, "offset", 0),
            limit=_int(request, "limit", 50, 1, 10**6),
        )
        return data(
            {
                **out,
                "version": version,
                "theory_done": table.theory_done,
                "configs_with_results": table.configs_with_results,
            }
        )

    def api_layers(request: Request) -> Response:
        table, version = _table(request)
        q = request.query_params
        quantities = [s for s in (q.get("quantities") or "activation,gradient").split(",") if s]
        out = views.layers(
            table,
            where=q.get("where"),
            stat=q.get("stat") or "std",
            quantities=quantities,
            max_lines=_int(request, "max_lines", 20, 1, 200),
        )
        return data({**out, "version": version})

    def api_explosion(request: Request) -> Response:
        table, version = _table(request)
        out = views.explosion(
            table,
            where=request.query_params.get("where"),
            max_rows=_int(request, "max_rows", 40, 1, 200),
        )
        return data({**out, "version": version})

    def api_phase(request: Request) -> Response:
        table, version = _table(request)
        return data(
            {**views.phase(table, where=request.query_params.get("where")), "version": version}
        )

    def api_compare(request: Request) -> Response:
        q = request.query_params
        ids = _ids(q.get("ids"))
        if not 2 <= len(ids) <= MAX_COMPARE:
            raise UserError(
                f"ids: expected 2 to {MAX_COMPARE} distinct sweep ids. Received: {len(ids)}"
            )
        stat = q.get("stat") or "std"
        tables, sweeps = {}, []
        with dash.session() as session:
            for sweep_id in ids:
                info = get_sweep(session=session, sweep_id=sweep_id)
                (p,) = sweep_progress(session=session, sweep_id=sweep_id)
                table, version = dash.results(session, sweep_id)
                _, report = dash.check(session, sweep_id)
                tables[sweep_id] = table
                sweeps.append(
                    {
                        **_progress(p, info),
                        "version": version,
                        "check": views.check_summary(report, table, limit=0),
                        "results": views.summary(table),
                        "layers": views.layers(
                            table,
                            where=q.get("where"),
                            stat=stat,
                            max_lines=_int(request, "max_lines", 12, 1, 100),
                        ),
                    }
                )
        return data({"sweeps": sweeps, **views.compare(tables, stat=stat)})

    def plotly(request: Request) -> Response:
        return FileResponse(
            plotly_js(),
            media_type="text/javascript",
            headers={**_HEADERS, "Cache-Control": "public, max-age=86400"},
        )

    # ---------------------------------------------------------------------- errors

    def failed(request: Request, exc: Exception) -> Response:
        if isinstance(exc, UnknownSweepError):
            status = 404
        elif isinstance(exc, UserError):
            status = 400
        elif isinstance(exc, RuntimeFailure | StoreError):
            status = 503
        else:
            status = 500
        message = str(exc) if isinstance(exc, InitsweepError | StoreError) else type(exc).__name__
        if request.url.path.startswith("/api/"):
            return _JSON({"error": message}, status_code=status, headers=_HEADERS)
        return page(pages.error_page(status=status, message=message, database=database), status)

    routes = [
        Route("/", sweeps_html),
        Route("/sweeps/{sweep_id:int}", sweep_html),
        Route("/compare", compare_html),
        Route("/api/sweeps", api_sweeps),
        Route("/api/sweeps/{sweep_id:int}", api_sweep),
        Route("/api/sweeps/{sweep_id:int}/progress", api_progress),
        Route("/api/sweeps/{sweep_id:int}/results", api_results),
        Route("/api/sweeps/{sweep_id:int}/layers", api_layers),
        Route("/api/sweeps/{sweep_id:int}/explosion", api_explosion),
        Route("/api/sweeps/{sweep_id:int}/phase", api_phase),
        Route("/api/compare", api_compare),
        Route("/static/plotly.min.js", plotly),
        Mount("/static", StaticFiles(packages=[("scheduler.ui", "static")]), name="static"),
    ]
    middleware = [Middleware(GZipMiddleware, minimum_size=1024)]
    if "*" not in allowed_hosts:  # a page on another site cannot read this one by DNS rebinding
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            InitsweepError: failed,
            StoreError: failed,
            Exception: failed,
        },
    )
