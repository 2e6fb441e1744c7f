"""One self-contained HTML page per sweep: spec, provenance, results, plots, theory, notebook.

Images are base64 PNG data URIs and the CSS is inline: the page has no external asset and no
script, so it can be mailed, archived or opened offline.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from scheduler.analysis.compare import CheckReport, check, device_predictor, theories, with_theory
from scheduler.analysis.records import Record, config_columns
from scheduler.analysis.theory import ConfigTheory
from scheduler.errors import UserError
from scheduler.formatting import config_label, duration, number, pm
from worker.contract import SimConfig

__all__ = ["ConfigView", "ReportInput", "SweepProvenance", "SweepView", "render_report"]

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2937;
       max-width: 1280px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 36px 0 10px;
     border-bottom: 1px solid #e5e7eb; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 20px 0 8px; }
.sub { color: #6b7280; margin: 0 0 18px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 12.5px; }
th, td { border: 1px solid #e5e7eb; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fafafa; }
pre { background: #f8fafc; border: 1px solid #e5e7eb; padding: 10px 12px; overflow-x: auto;
      font-size: 12.5px; }
img { max-width: 100%; height: auto; border: 1px solid #e5e7eb; margin: 6px 0 14px; }
.ok { color: #047857; font-weight: 600; } .bad { color: #b91c1c; font-weight: 600; }
.muted { color: #6b7280; } .small { font-size: 11.5px; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 8px 0; }
dl.kv dt { font-weight: 600; } dl.kv dd { margin: 0; }
details > summary { cursor: pointer; color: #374151; margin: 6px 0; }
"""


class SweepView(Protocol):
    """What the report shows of a sweep (`scheduler.store.SweepInfo` is one)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def spec_yaml(self) -> str: ...
    @property
    def n_configs(self) -> int: ...
    @property
    def trials_done(self) -> int: ...
    @property
    def trials_total(self) -> int: ...


class ConfigView(Protocol):
    """What the report shows of one configuration (`scheduler.store.ConfigInfo` is one)."""

    @property
    def id(self) -> int: ...
    @property
    def config_hash(self) -> str: ...
    @property
    def config(self) -> SimConfig: ...
    @property
    def axes(self) -> dict[str, Any]: ...
    @property
    def position(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def trials(self) -> int: ...


@dataclass(frozen=True)
class SweepProvenance:
    """Where and how a sweep's chunks were computed (from the chunk rows)."""

    n_chunks: int
    status_counts: dict[str, int]
    tf_versions: dict[str, int]
    devices: dict[str, int]
    samplers: dict[str, int]
    dtypes: dict[str, int]
    workers: dict[str, int]
    seed_keys: dict[int, list[int]]  # configuration id -> distinct seed keys of its chunks
    chunks_per_config: dict[int, dict[str, int]]  # configuration id -> chunks by status
    duration_total_s: float
    duration_mean_s: float | None
    attempts_total: int
    first_started: datetime | None
    last_finished: datetime | None


@dataclass(frozen=True)
class ReportInput:
    """Everything one report shows, as values (`scheduler.query.report_input` reads it)."""

    sweep: SweepView
    configs: Sequence[ConfigView]  # in position order
    records: Sequence[Record]  # result records, each carrying its configuration
    provenance: SweepProvenance
    devices: Mapping[str, str | None] = field(default_factory=dict)  # config_hash -> device


# ------------------------------------------------------------------------------- helpers


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            cls = ' class="num"' if i in numeric else ""
            out.append(f"<td{cls}>{_e(cell)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _counts(values: Mapping[str, int]) -> str:
    if not values:
        return "—"
    return ", ".join(f"{k} ({n})" for k, n in values.items())


def _when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S UTC") if t is not None else "—"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


# ------------------------------------------------------------------------------ sections


def _provenance_section(info: SweepView, prov: SweepProvenance) -> str:
    wall = None
    if prov.first_started is not None and prov.last_finished is not None:
        wall = (prov.last_finished - prov.first_started).total_seconds()
    items = [
        ("status", info.status),
        ("seed", str(info.seed)),
        ("configurations", str(info.n_configs)),
        ("chunks", f"{prov.n_chunks} ({_counts(prov.status_counts)})"),
        ("trials", f"{info.trials_done} / {info.trials_total}"),
        ("TensorFlow", _counts(prov.tf_versions)),
        ("devices", _counts(prov.devices)),
        ("samplers", _counts(prov.samplers)),
        ("dtypes", _counts(prov.dtypes)),
        ("workers", _counts(prov.workers)),
        ("attempts", str(prov.attempts_total)),
        (
            "chunk durations",
            f"total {duration(prov.duration_total_s)}, mean {duration(prov.duration_mean_s)}",
        ),
        ("wall time", f"{duration(wall)} (first chunk start to last chunk end)"),
        ("created", _when(info.created_at)),
        ("first chunk started", _when(prov.first_started)),
        ("last chunk finished", _when(prov.last_finished)),
        ("finished", _when(info.finished_at)),
    ]
    body = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    note = (
        '<p class="small muted">Seed keys (one per configuration, derived from the sweep seed '
        "and the configuration's content) are in the summary table.</p>"
    )
    return f'<h2>Provenance</h2><dl class="kv">{body}</dl>{note}'


def _summary_section(
    infos: Sequence[ConfigView],
    records: Sequence[Mapping[str, Any]],
    prov: SweepProvenance,
) -> str:
    by_config: dict[str, dict[tuple[int, str], Mapping[str, Any]]] = {}
    for r in records:
        by_config.setdefault(str(r["config_hash"]), {})[(int(r["layer"]), str(r["quantity"]))] = r
    rows = []
    for info in infos:
        layers = by_config.get(info.config_hash, {})
        depth = info.config.depth
        top = layers.get((depth, "activation"))
        grad = layers.get((1, "gradient"))
        first = [
            layer
            for (layer, quantity), r in layers.items()
            if quantity == "activation" and int(r["n_first_nonfinite"])
        ]
        label = _label(info)
        keys = prov.seed_keys.get(info.id, [])
        rows.append(
            [
                str(info.position),
                label,
                f"{top['n_trials'] if top else 0} / {info.trials}",
                ", ".join(
                    f"{n} {status}"
                    for status, n in sorted(prov.chunks_per_config.get(info.id, {}).items())
                )
                or "—",
                ", ".join(str(k) for k in keys) or "—",
                pm(top["std"], top["std_se"]) if top else "—",
                number(top.get("theory_std")) if top else "—",
                pm(grad["std"], grad["std_se"]) if grad else "—",
                number(grad.get("theory_std")) if grad else "—",
                f"{top['n_finite']}/{top['n_trials']}" if top else "—",
                str(min(first)) if first else "—",
                str(top["n_collapsed"]) if top else "—",
            ]
        )
    table = _table(
        [
            "#",
            "configuration",
            "trials",
            "chunks",
            "seed key",
            "std(h) last layer",
            "theory",
            "std(∂L/∂z) layer 1",
            "theory",
            "finite at end",
            "first non-finite layer",
            "collapsed at end",
        ],
        rows,
        numeric=(0, 2, 5, 6, 7, 8, 9, 10, 11),
    )
    return (
        "<h2>Results by configuration</h2>"
        '<p class="small muted">std: mean over trials of the per-trial std over units, ± '
        "standard error; theory: mean-field sqrt(E[std²]).</p>" + table
    )


def _theory_section(
    infos: Sequence[ConfigView], predicted: Mapping[str, ConfigTheory], report: CheckReport
) -> str:
    verdict = (
        f'<p class="{"ok" if report.passed else "bad"}">{_e(report.summary())}</p>'
        '<p class="small muted">z = (observed - predicted) / SE for E[mean_sq] and E[mean]; '
        "std against its interval; the recorded overflow and collapse layers against theory's "
        "laws within 2 layers. Every excuse is bounded by its size: a finite-width deviation "
        "only within 3x its O(depth/width) correction (none where E[mean_sq] is exact at any "
        "width: linear, relu and leaky_relu with centred i.i.d. weights), censoring only by "
        "what the censored share of trials can do.</p>"
    )
    rows = report.rows()
    shown = [r for r in rows if not r["explanation"].startswith("overflow/collapse censoring")]
    censored = len(rows) - len(shown)
    dev_head = ["configuration", "layer", "quantity", "statistic", "observed ± SE"]
    dev_head += ["predicted", "z", "explanation"]
    deviations = ""
    if shown:
        deviations = f"<h3>Deviations |z| &gt; {report.threshold:g}</h3>" + _table(
            dev_head, ([r[k] for k in r] for r in shown), numeric=(1, 4, 5, 6)
        )
    elif not rows:
        deviations = f"<p>No statistic deviates by more than {report.threshold:g} SE.</p>"
    if censored:
        cens = [r for r in rows if r["explanation"].startswith("overflow/collapse censoring")]
        deviations += (
            f"<details><summary>{censored} censored deviations (overflow/collapse)</summary>"
            + _table(dev_head, ([r[k] for k in r] for r in cens), numeric=(1, 4, 5, 6))
            + "</details>"
        )
    per_config = []
    for info in infos:
        t = predicted.get(info.config_hash)
        if t is None:
            continue
        per_config.append(
            [
                str(info.position),
                _label(info),
                number(t.q_star),
                number(t.chi_1),
                t.phase,
                number(t.xi_q, 3),
                number(t.xi_c, 3),
                number(t.overflow_layer, 3),
                number(t.underflow_layer, 3),
                "yes" if t.exact else "no",
                t.note or "",
            ]
        )
    head = ["#", "configuration", "q*", "χ₁", "phase", "ξ_q", "ξ_c", "overflow layer"]
    head += ["collapse layer", "i.i.d. centred", "note"]
    return (
        "<h2>Theory comparison</h2>"
        + verdict
        + deviations
        + "<h3>Mean-field predictions per configuration</h3>"
        + '<p class="small muted">Poole et al. 2016; Schoenholz et al. 2017. Overflow and '
        "collapse layers: expected first layer (forward pass) where the median trial "
        "overflows / underflows to exactly 0 within the depth; — otherwise.</p>"
        + _table(head, per_config, numeric=(0, 2, 3, 5, 6, 7, 8))
    )


def _label(info: ConfigView) -> str:
    return config_label(config_columns(info.config, info.axes))


def _plots_section(records: Sequence[Mapping[str, Any]]) -> str:
    from scheduler.analysis.plots import plot_png

    parts = ["<h2>Plots</h2>"]
    kinds = [("layers", "Per-layer std, Monte Carlo vs theory")]
    kinds.append(("explosion", "Overflow and collapse by layer"))
    if any("sigma_w" in r for r in records):
        kinds.append(("phase", "Order-to-chaos phase diagram"))
    for kind, alt in kinds:
        try:
            parts.append(_img(plot_png(kind, records), alt))
        except UserError as exc:
            parts.append(f'<p class="muted">{_e(kind)}: {_e(exc)}</p>')
    return "".join(parts)


def _reproduction_section(records: Sequence[Mapping[str, Any]]) -> str:
    from scheduler.analysis.reproduction import reproduction_rows

    rows = reproduction_rows(records)
    if not rows:
        return ""
    table = _table(
        ["cell", "statistic", "notebook", "initsweep (± SE)", "theory", "z", "explanation"],
        (
            [
                r["cell"],
                r["statistic"],
                r["notebook"],
                r["initsweep"],
                r["theory"],
                "—" if r["z"] is None else f"{r['z']:+.1f}",
                r["explanation"],
            ]
            for r in rows
        ),
        numeric=(0, 5),
    )
    return (
        "<h2>Seed notebook reproduction</h2>"
        '<p class="small muted">The numbers printed by shared/seed/notebook.txt beside '
        "initsweep's 1000 trials per cell. z compares the notebook's value with initsweep's "
        "estimate using both standard errors (the notebook's is initsweep's times "
        "sqrt(trials / passes)). Layers are 1-based (notebook index + 1).</p>" + table
    )


def render_report(data: ReportInput, *, now: datetime | None = None) -> str:
    """The sweep's report as one self-contained HTML page (no external asset, no script)."""
    info, infos, prov = data.sweep, data.configs, data.provenance
    configs = {c.config_hash: c.config for c in infos}
    on_device = device_predictor(data.devices)
    predicted = theories(configs, on_device)
    records = with_theory(
        data.records,
        configs,
        predictor=lambda c: predicted.get(c.config_hash) or on_device(c),
    )
    unfinished = [c for c in infos if c.status != "done"]
    report = check(
        records, incomplete=[config_label(config_columns(c.config, c.axes)) for c in unfinished]
    )
    title = f"initsweep · sweep {info.id} · {info.name}"
    completeness = (
        '<span class="ok">complete</span>'
        if not unfinished
        else f'<span class="bad">incomplete: {len(infos) - len(unfinished)} of {len(infos)} '
        "configurations have all their chunks; the others show the trials done so far</span>"
    )
    sections = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">{info.n_configs} configurations · {info.trials_done} of '
        f"{info.trials_total} trials done · status {_e(info.status)} · created "
        f"{_e(_when(info.created_at))} · {completeness}</p>",
        "<h2>Spec</h2>",
        f"<pre>{_e(info.spec_yaml)}</pre>",
        _provenance_section(info, prov),
        _summary_section(infos, records, prov),
    ]
    if records:
        sections.append(_plots_section(records))
    else:
        sections.append("<h2>Plots</h2><p class='muted'>No chunk has finished yet.</p>")
    sections.append(_theory_section(infos, predicted, report))
    sections.append(_reproduction_section(records))
    body = "\n".join(s for s in sections if s)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style></head>\n<body>\n{body}\n"
        f'<p class="small muted">Generated by initsweep at {_e(_when(now or datetime.now(UTC)))}.</p>'
        "\n</body></html>\n"
    )
