"""Figures of a sweep's records (matplotlib, object API, no pyplot; imported on first use).

Each kind takes the records of `scheduler.query.theory_records` (plain `result_records` plot
without the theory overlays) and returns a matplotlib `Figure`; `save_figure` writes one as PNG,
PDF or SVG by the file's extension:

- `layers`:    a statistic (`std`, `mean_sq`, `mean`) of each quantity against the layer, every
               configuration, ±2 SE bands, theory black dashed (`scheduler.analysis.layers_plot`).
- `summary`:   a statistic at one layer (the last by default) against a numeric axis (width,
               depth, sigma_w, ...), ±2 SE bars and theory (`scheduler.analysis.summary_plot`).
- `explosion`: configurations x layers: fraction of trials whose forward pass was non-finite at or
               before each layer, and fraction collapsed to exactly 0, with the predicted layers.
- `phase`:     a (sigma_w, sigma_b) grid: log10 of the last layer's E[mean_sq(h)] and of the
               gradient ratio E|g^1|^2 / E|g^D|^2, with the critical line chi_1 = 1 of the theory.
- `quantiles`: per-layer median and 5-95% band of the per-trial mean_sq against its mean
               (`scheduler.analysis.bands`).

The varying axes are drawn as `scheduler.analysis.figures.encode` decides (colour with a
colourbar for a numeric axis, line styles for a second, rows of panels for the rest); `color` and
`style` choose them. A kind is one entry of `_FIGURES`: a function of the configurations
(`figures.ConfigCurves`) and of the keyword options it takes.
"""

from __future__ import annotations

import inspect
import io
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scheduler.analysis.bands import quantiles_figure
from scheduler.analysis.figures import ConfigCurves as _Config
from scheduler.analysis.figures import Record, figure_format, house_style, save_figure
from scheduler.analysis.figures import configs_of as _configs
from scheduler.analysis.figures import fmt_value as _fmt
from scheduler.analysis.figures import new_figure as _new_figure
from scheduler.analysis.figures import varying as _varying
from scheduler.analysis.layers_plot import layers_of
from scheduler.analysis.phase_plot import phase_of
from scheduler.analysis.summary_plot import summary_of
from scheduler.errors import UserError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "KINDS",
    "explosion_figure",
    "figure",
    "figure_format",
    "layers_figure",
    "options_of",
    "phase_figure",
    "plot",
    "plot_explosion",
    "plot_layers",
    "plot_phase",
    "plot_png",
    "save_figure",
    "summary_figure",
]

_REPORT_DPI = 110  # PNGs embedded in the HTML report


def _shorten(text: str, n: int = 56) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _legend(c: _Config, keys: Sequence[str]) -> str:
    """What tells `c` apart from the other rows: the values of the varying `keys`."""
    if "label" in keys and c.params.get("label"):
        return _shorten(str(c.params["label"]))
    parts = [
        _fmt(c.params[k]) if k in ("init", "activation") else f"{k}={_fmt(c.params[k])}"
        for k in keys
        if k in c.params
    ]
    return _shorten(" · ".join(parts) or c.hash[:8])


# --------------------------------------------------------------------------------- layers


def layers_figure(
    records: Iterable[Record],
    *,
    stat: str = "std",
    quantity: str | Sequence[str] | None = None,
    color: str | None = None,
    style: str | None = None,
) -> Figure:
    """Per-layer `stat` (std, mean_sq or mean over units, averaged over trials) of `quantity`
    (default: activations and gradients, one column each) for every configuration, ±2 SE bands,
    mean-field theory black dashed; `color` / `style` name the axes drawn by colour / line style."""
    return layers_of(_configs(records), stat=stat, quantity=quantity, color=color, style=style)


def plot_layers(records: Iterable[Record], path: str | Path, **options: Any) -> Path:
    """`layers_figure` written to `path` (PNG, PDF or SVG by its extension)."""
    return save_figure(layers_figure(records, **options), path)


def summary_figure(
    records: Iterable[Record],
    *,
    x: str | None = None,
    stat: str = "mean_sq",
    quantity: str | Sequence[str] | None = None,
    layer: int | None = None,
    color: str | None = None,
    style: str | None = None,
) -> Figure:
    """`stat` of `quantity` (default activation) at `layer` (default the last: D, or 1 for
    gradients) against the numeric axis `x` (default the one with the most values), ±2 SE bars,
    mean-field theory black dashed."""
    return summary_of(
        _configs(records), x=x, stat=stat, quantity=quantity, layer=layer, color=color, style=style
    )


# ------------------------------------------------------------------------------ explosion


def explosion_figure(records: Iterable[Record]) -> Figure:
    """Heatmaps configurations x layers of overflow (at or before) and collapse to 0."""
    with house_style():
        return _explosion_figure(_configs(records))


def plot_explosion(records: Iterable[Record], path: str | Path) -> Path:
    """`explosion_figure` written to `path` (PNG, PDF or SVG by its extension)."""
    return save_figure(explosion_figure(records), path)


_EXPLOSION_ROWS = 30


def _eventful(c: _Config) -> bool:
    return (
        c.overflow is not None
        or c.underflow is not None
        or any(int(r["n_first_nonfinite"]) or int(r["n_collapsed"]) for r in c.by_key.values())
    )


def _explosion_figure(all_configs: list[_Config]) -> Figure:
    import numpy as np

    configs = all_configs
    hidden = 0
    if not any(_eventful(c) for c in configs) and len(configs) > 1:
        return _message_figure(
            "Overflow and collapse by layer",
            f"No trial of the {len(configs)} configurations overflowed or collapsed to 0,\n"
            "and theory predicts neither within their depths.",
        )
    if len(configs) > _EXPLOSION_ROWS:
        configs = [c for c in all_configs if _eventful(c)]
        hidden = len(all_configs) - len(configs)
    varying = _varying(all_configs)
    depth = max(c.depth for c in configs)
    nonfinite = np.full((len(configs), depth), np.nan)
    collapsed = np.full((len(configs), depth), np.nan)
    for i, c in enumerate(configs):
        total = 0
        for layer in range(1, c.depth + 1):
            r = c.get(layer, "activation") or c.get(layer, "preactivation")
            if r is None:
                continue
            n = max(1, int(r["n_trials"]))
            total += int(r["n_first_nonfinite"])
            nonfinite[i, layer - 1] = total / n
            collapsed[i, layer - 1] = int(r["n_collapsed"]) / n
    labels = [_legend(c, varying or ["init", "activation"]) for c in configs]
    height = min(2.2 + 0.3 * len(configs), 24.0)
    fig = _new_figure(13.0, height)
    axes = fig.subplots(1, 2, sharey=True)
    panels = [
        (axes[0], nonfinite, "non-finite at or before layer l (forward)", "overflow", "v"),
        (axes[1], collapsed, "collapsed to exactly 0 at layer l", "underflow", "^"),
    ]
    extent = (0.5, depth + 0.5, len(configs) - 0.5, -0.5)
    for ax, data, title, which, marker in panels:
        from matplotlib import colormaps
        from matplotlib.colors import PowerNorm
        from matplotlib.patches import Rectangle

        cmap = colormaps["magma_r"].with_extremes(bad="white")
        image = ax.imshow(
            np.ma.masked_invalid(data),
            aspect="auto",
            interpolation="nearest",
            cmap=cmap,
            norm=PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0),  # a few % still shows
            extent=extent,
        )
        for i, c in enumerate(configs):  # beyond a configuration's depth: hatched
            if c.depth < depth:
                ax.add_patch(
                    Rectangle(
                        (c.depth + 0.5, i - 0.5),
                        depth - c.depth,
                        1.0,
                        fill=False,
                        hatch="///",
                        edgecolor="0.8",
                        lw=0.0,
                    )
                )
        predicted = [
            (c.overflow if which == "overflow" else c.underflow, i) for i, c in enumerate(configs)
        ]
        xs = [p for p, _ in predicted if p is not None]
        ys = [i for p, i in predicted if p is not None]
        if xs:
            ax.scatter(
                xs,
                ys,
                marker=marker,
                s=70,
                color="#0ea5e9",
                edgecolors="white",
                linewidths=0.8,
                label=f"predicted {which} layer (theory)",
                zorder=3,
            )
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize=8, frameon=False)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("layer l")
        ax.set_yticks(range(len(configs)), labels, fontsize=7.5)
        fig.colorbar(image, ax=ax, label="fraction of trials", pad=0.01, aspect=25)
    title = "Overflow and collapse by layer (hatched: beyond the configuration's depth)"
    if hidden:
        title += f"\n{hidden} configurations with neither, observed or predicted, not shown"
    if not any(_eventful(c) for c in configs):
        title += ": no trial overflowed or collapsed"
    fig.suptitle(title, fontsize=12)
    return fig


def _message_figure(title: str, message: str) -> Figure:
    fig = _new_figure(9.0, 2.2)
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, transform=ax.transAxes)
    fig.suptitle(title, fontsize=12)
    return fig


# --------------------------------------------------------------------------------- phase


def phase_figure(records: Iterable[Record]) -> Figure:
    """Order-to-chaos map over a (sigma_w, sigma_b) grid with the chi_1 = 1 line."""
    with house_style():
        return phase_of(_configs(records))


def plot_phase(records: Iterable[Record], path: str | Path) -> Path:
    """`phase_figure` written to `path` (PNG, PDF or SVG by its extension)."""
    return save_figure(phase_figure(records), path)


# ---------------------------------------------------------------------------------- entry

# kind -> a function of the configurations and of the keyword options that kind takes
_FIGURES: dict[str, Callable[..., Figure]] = {
    "layers": layers_of,
    "summary": summary_of,
    "explosion": _explosion_figure,
    "phase": phase_of,
    "quantiles": lambda configs: quantiles_figure(r for c in configs for r in c.by_key.values()),
}
KINDS: tuple[str, ...] = tuple(_FIGURES)


def options_of(kind: str) -> tuple[str, ...]:
    """The keyword options the figure `kind` takes (`stat`, `quantity`, `x`, ...)."""
    return tuple(
        name
        for name, p in inspect.signature(_FIGURES[kind]).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    )


def figure(kind: str, records: Iterable[Record], **options: Any) -> Figure:
    """The figure `kind` of `records`; `options` are that kind's (UserError for another's).

    A None option is its default, so a caller can pass every option it has.
    """
    if kind not in _FIGURES:
        raise UserError(f"plot --kind: expected one of {', '.join(KINDS)}. Received: {kind!r}")
    given = {k: v for k, v in options.items() if v is not None and v != ()}
    takes = options_of(kind)
    for name in given:
        if name not in takes:
            raise UserError(
                f"--{name}: not an option of --kind {kind} (it takes "
                f"{', '.join('--' + t for t in takes) or 'no option'})"
            )
    configs = _configs(records)
    with house_style():
        return _FIGURES[kind](configs, **given)


def plot(kind: str, records: Iterable[Record], path: str | Path, **options: Any) -> Path:
    """Write the figure `kind` of `records` to `path`: PNG, PDF or SVG by its extension (checked
    before anything is drawn)."""
    figure_format(path)
    return save_figure(figure(kind, records, **options), path)


def plot_png(kind: str, records: Iterable[Record], **options: Any) -> bytes:
    """The figure `kind` of `records` as PNG bytes (for embedding)."""
    buf = io.BytesIO()
    figure(kind, records, **options).savefig(buf, format="png", dpi=_REPORT_DPI)
    return buf.getvalue()
