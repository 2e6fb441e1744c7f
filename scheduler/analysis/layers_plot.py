"""The per-layer figure: a statistic of each quantity against the layer l, every configuration.

One column of panels per quantity (activations h^l and gradients g^l = dL/dz^l by default), one
row per value of the axes `figures.encode` facets; in a panel one line per configuration, its
colour and line style set by the colour and style axes. Each line is the trial average of the
statistic over units (`std`, `mean_sq` or `mean`), with a band of ±2 standard errors of that
average and, in thin black short dashes on top, the mean-field prediction
(`theory_<stat>`; for `std` it is sqrt(E[std^2]) >= E[std], equal at large width). Layers where
some trials were non-finite or collapsed to 0 are drawn faded: the average of the other trials
is a censored estimate there. Depths are never merged: gradient profiles depend on the depth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from scheduler.analysis.figures import (
    STATS,
    THEORY_STYLE,
    ConfigCurves,
    Encoding,
    Record,
    caption,
    encode,
    figure_legend,
    fit_log_limits,
    house_style,
    log_scale_wanted,
    new_figure,
    open_frame,
    positive,
    quantity_name,
    stat_label,
    theory_label,
)
from scheduler.analysis.theory import DTYPE_LIMITS
from scheduler.errors import UserError
from worker.contract import QUANTITIES

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_QUANTITIES",
    "MAX_ROWS",
    "censored",
    "check_stat",
    "layers_of",
    "quantities_of",
    "theory_of",
]

DEFAULT_QUANTITIES = ("activation", "gradient")
MAX_ROWS = 12  # rows of panels; beyond, the figure is unreadable: narrow with --where
_LW = 1.6


def check_stat(stat: str) -> str:
    """`stat` when it is one of `STATS`, else a UserError naming them."""
    if stat not in STATS:
        raise UserError(f"--stat: expected one of {', '.join(STATS)}. Received: {stat!r}")
    return stat


def quantities_of(quantity: str | Sequence[str] | None, default: Sequence[str]) -> list[str]:
    """The quantities asked for (`default` for None), each checked against the core's."""
    asked = [quantity] if isinstance(quantity, str) else list(quantity or default)
    for q in asked:
        if q not in QUANTITIES:
            raise UserError(f"--quantity: expected one of {', '.join(QUANTITIES)}. Received: {q!r}")
    return list(dict.fromkeys(asked))


def _stat_value(r: Record, key: str, log: bool) -> float:
    value = r.get(key)
    if value is None:
        return math.nan
    return positive(value) if log else float(value)


def theory_of(r: Record, stat: str) -> float:
    """The prediction of `stat` beside record `r` (NaN: none); for std sqrt(E[mean_sq]) when
    only that is there."""
    value = r.get(f"theory_{stat}")
    if value is None and stat == "std" and r.get("theory_mean_sq") is not None:
        value = math.sqrt(max(0.0, float(r["theory_mean_sq"])))
    return math.nan if value is None else float(value)


def censored(r: Record) -> bool:
    """Some trials of `r` were non-finite or collapsed to 0: its averages are censored."""
    return int(r["n_finite"]) < int(r["n_trials"]) or int(r["n_collapsed"]) > 0


def _usable(c: ConfigCurves, quantity: str, stat: str) -> list[Record]:
    return [r for r in c.series(quantity) if int(r["n_finite"]) >= 1 and r.get(stat) is not None]


def _draw(ax: Axes, c: ConfigCurves, quantity: str, stat: str, e: Encoding, log: bool) -> bool:
    """One configuration's curve, band and theory on `ax`; False when there is nothing to draw."""
    series = _usable(c, quantity, stat)
    if not series:
        return False
    color, style = e.color_of(c), e.style_of(c)
    xs = [int(r["layer"]) for r in series]
    ys = [_stat_value(r, stat, log) for r in series]
    se = [float(r.get(f"{stat}_se") or 0.0) for r in series]
    flags = [censored(r) for r in series]
    marker = "o" if len(xs) <= 5 else None  # a 1-layer network is two points
    clean = [math.nan if cens else y for y, cens in zip(ys, flags, strict=True)]
    gid = f"{quantity}:{c.hash}"  # names the artists in an SVG, and for tests
    ax.plot(
        xs, clean, color=color, ls=style, lw=_LW, marker=marker, ms=3.5, zorder=2, gid="mc:" + gid
    )
    if any(flags):
        first = next(i for i, cens in enumerate(flags) if cens)
        start = max(0, first - 1)
        ax.plot(
            xs[start:],
            ys[start:],
            color=color,
            ls=style,
            lw=1.0,
            alpha=0.4,
            marker=marker,
            ms=3,
            gid="censored:" + gid,
        )
    # the band only where the average is not censored (a biased estimate has no honest SE)
    lo = [y - 2 * s for y, s in zip(clean, se, strict=True)]
    if log:
        lo = [max(low, y * 1e-3) for low, y in zip(lo, clean, strict=True)]
    hi = [y + 2 * s for y, s in zip(clean, se, strict=True)]
    ax.fill_between(xs, lo, hi, color=color, alpha=0.2, lw=0, zorder=1, gid="se:" + gid)
    theory = [(int(r["layer"]), theory_of(r, stat)) for r in c.series(quantity)]
    if log:
        theory = [(x, positive(t)) for x, t in theory]
    if any(math.isfinite(t) for _, t in theory):
        tx, ty = [x for x, _ in theory], [t for _, t in theory]
        ax.plot(tx, ty, **THEORY_STYLE, zorder=3, gid="theory:" + gid)
        if marker:
            ax.plot(tx, ty, color="k", ls="none", marker="x", ms=5, mew=0.9, zorder=3)
    return True


def _dtype_limit(ax: Axes, dtypes: set[str]) -> None:
    """A dash-dot line at the largest finite value of the configurations' dtype, when in view."""
    top = ax.get_ylim()[1]
    for dtype in sorted(dtypes):
        big = DTYPE_LIMITS.get(dtype, (math.inf,))[0]
        if big < top:
            ax.axhline(big, color="0.45", lw=0.8, ls="-.", zorder=0)
            ax.annotate(
                f"{dtype} max",
                (0.99, big),
                xycoords=("axes fraction", "data"),
                fontsize=7,
                color="0.3",
                ha="right",
                va="bottom",
                bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
            )


def _integer_layers(ax: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
    lo, hi = ax.get_xlim()
    if hi - lo < 3.0:  # a 1-layer network: half a layer either side of its points
        ax.set_xlim(math.floor(lo + 0.5) - 0.5, math.ceil(hi - 0.5) + 0.5)


def _style_handles(stat: str, any_censored: bool) -> list[Any]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [
        Line2D([], [], color="0.4", lw=_LW, label="Monte Carlo (mean over trials)"),
        Patch(color="0.4", alpha=0.2, lw=0, label="±2 SE"),
        Line2D([], [], **THEORY_STYLE, label=theory_label(stat)),
    ]
    if any_censored:
        handles.append(
            Line2D(
                [],
                [],
                color="0.4",
                lw=1.0,
                alpha=0.4,
                label="censored: some trials\nnon-finite or collapsed",
            )
        )
    return handles


def layers_of(
    configs: list[ConfigCurves],
    *,
    stat: str = "std",
    quantity: str | Sequence[str] | None = None,
    color: str | None = None,
    style: str | None = None,
) -> Figure:
    """The per-layer figure of `configs` (see the module docstring)."""
    check_stat(stat)
    asked = quantities_of(quantity, DEFAULT_QUANTITIES)
    if quantity is not None and not any(_usable(c, q, stat) for c in configs for q in asked):
        raise UserError(f"--quantity {', '.join(asked)}: no finite {stat} of it in these records")
    # a quantity the records hold gets its column (saying so when nothing in it is finite)
    quantities = [q for q in asked if any(c.series(q) for c in configs)] or asked[:1]
    e = encode(configs, color=color, style=style)
    rows = e.split_rows(configs)
    if len(rows) > MAX_ROWS:
        raise UserError(
            f"plot layers: {len(rows)} rows of panels (one per {' × '.join(e.rows)}); at most "
            f"{MAX_ROWS}: narrow with --where (e.g. --where {e.rows[0]}=...)"
        )
    with house_style():
        return _figure(rows, quantities, stat, e)


def _figure(
    rows: list[list[ConfigCurves]], quantities: list[str], stat: str, e: Encoding
) -> Figure:
    nrows, ncols = len(rows), len(quantities)
    fig = new_figure(3.5 * ncols + 2.3, 2.55 * nrows + 0.55)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    any_censored = False
    for i, row in enumerate(rows):
        for j, q in enumerate(quantities):
            ax = axes[i][j]
            # zeros (collapsed) are gaps on a log axis; a negative mean keeps it linear
            values = [
                _stat_value(r, stat, stat != "mean") for c in row for r in _usable(c, q, stat)
            ]
            log = log_scale_wanted(values)
            drawn = [_draw(ax, c, q, stat, e, log) for c in row]
            any_censored |= any(censored(r) for c in row for r in _usable(c, q, stat))
            if log:
                ax.set_yscale("log")
                fit_log_limits(ax)
            if stat == "std":
                _dtype_limit(ax, {str(c.params.get("dtype", "float32")) for c in row})
            if not any(drawn):
                ax.text(
                    0.5,
                    0.5,
                    f"no finite {stat}",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    color="0.4",
                )
            ax.grid(True, which="major", alpha=0.25, lw=0.6)
            open_frame(ax)
            ax.set_ylabel(stat_label(stat, q))
            title = quantity_name(q)
            if e.rows:
                title = f"{e.row_title(row[0])}: {title}"
            ax.set_title(title)
            _integer_layers(ax)
            if i == nrows - 1:
                ax.set_xlabel("layer l")
    e.colorbar(fig, axes)
    handles = e.legend_handles() + _style_handles(stat, any_censored)
    figure_legend(fig, handles, caption([c for row in rows for c in row]))
    return fig
