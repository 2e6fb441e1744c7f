"""The summary figure: a statistic at one layer against a numeric axis (width, depth, sigma_w, ...).

For each configuration the trial average of `stat` (`mean_sq` by default: the statistic the
mean-field recursion predicts exactly for linear and relu networks) of `quantity` at `layer`:
by default the last layer the signal reaches, D for pre-activations and activations and 1 for
gradients (backpropagation ends there). Points carry ±2 SE bars; the mean-field prediction at
the same x is the thin black dashed line. Configurations that differ in other axes are separate series
(colour, line style, rows of panels, as `figures.encode` decides). A point whose trials were
partly non-finite or collapsed is hollow: its average is censored.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from scheduler.analysis.figures import (
    THEORY_STYLE,
    ConfigCurves,
    Encoding,
    Record,
    axis_label,
    caption,
    encode,
    figure_legend,
    fit_log_limits,
    fmt_value,
    house_style,
    is_numeric,
    log_scale_wanted,
    new_figure,
    open_frame,
    positive,
    quantity_name,
    stat_label,
    theory_label,
    varying,
)
from scheduler.analysis.layers_plot import (
    MAX_ROWS,
    censored,
    check_stat,
    quantities_of,
    theory_of,
)
from scheduler.errors import UserError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["numeric_axes", "summary_of"]


def numeric_axes(configs: Sequence[ConfigCurves]) -> list[str]:
    """The axes that vary among `configs` with a number for every configuration."""
    return [k for k in varying(configs) if all(is_numeric(c.params.get(k)) for c in configs)]


def _x_axis(configs: Sequence[ConfigCurves], x: str | None) -> str:
    numeric = numeric_axes(configs)
    if x is None:
        if not numeric:
            raise UserError(
                "plot summary: expected a numeric axis that varies (width, depth, sigma_w, ...). "
                f"Received configurations varying in: {', '.join(varying(configs)) or 'nothing'}"
            )
        return max(numeric, key=lambda k: len({c.params[k] for c in configs}))
    if x in numeric:
        return x
    known = sorted({k for c in configs for k in c.params})
    if x in known:
        values = sorted({fmt_value(c.params.get(x)) for c in configs})
        what = "one value" if len(values) == 1 else "values that are not all numbers"
        raise UserError(
            f"--x {x}: {what} here ({', '.join(values[:6])}); numeric axes that vary: "
            f"{', '.join(numeric) or 'none'}"
        )
    close = difflib.get_close_matches(x, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UserError(f"--x {x}: not an axis of these records{hint} (axes: {', '.join(known)})")


def _at(c: ConfigCurves, quantity: str, layer: int | None) -> Record | None:
    if layer is None:
        layer = 1 if quantity == "gradient" else c.depth
    return c.get(layer, quantity)


def _layer_name(quantity: str, layer: int | None, depths: set[int]) -> str:
    if layer is not None:
        return str(layer)
    if quantity == "gradient":
        return "1"
    return f"D = {depths.pop()}" if len(depths) == 1 else "D"


def summary_of(
    configs: list[ConfigCurves],
    *,
    x: str | None = None,
    stat: str = "mean_sq",
    quantity: str | Sequence[str] | None = None,
    layer: int | None = None,
    color: str | None = None,
    style: str | None = None,
) -> Figure:
    """The summary figure of `configs` (see the module docstring)."""
    check_stat(stat)
    quantities = quantities_of(quantity, ("activation",))
    x_key = _x_axis(configs, x)
    shown = [c for c in configs if any(_at(c, q, layer) is not None for q in quantities)]
    if not shown:
        raise UserError(
            f"--layer {layer}: no configuration has that layer (depths "
            f"{', '.join(sorted({str(c.depth) for c in configs}))})"
        )
    e = encode(shown, exclude=(x_key,), color=color, style=style)
    rows = e.split_rows(shown)
    if len(rows) > MAX_ROWS:
        raise UserError(
            f"plot summary: {len(rows)} rows of panels (one per {' × '.join(e.rows)}); at most "
            f"{MAX_ROWS}: narrow with --where"
        )
    note = caption(shown)
    if len(shown) < len(configs):
        hidden = len(configs) - len(shown)
        note += f"\n{hidden} configurations shallower\nthan layer {layer} not shown"
    with house_style():
        return _figure(rows, x_key, quantities, stat, layer, e, note)


def _series(row: list[ConfigCurves], e: Encoding) -> list[list[ConfigCurves]]:
    groups: dict[tuple[str, str], list[ConfigCurves]] = {}
    for c in row:
        key = (repr(c.params.get(e.color or "")), repr(c.params.get(e.style or "")))
        groups.setdefault(key, []).append(c)
    return list(groups.values())


def _draw(
    ax: Axes,
    group: list[ConfigCurves],
    x_key: str,
    q: str,
    stat: str,
    layer: int | None,
    e: Encoding,
    log: bool,
) -> list[float]:
    """One series: points with ±2 SE bars and the theory line; returns its x values."""
    points = []
    for c in group:
        r = _at(c, q, layer)
        if r is not None and int(r["n_finite"]) >= 1 and r.get(stat) is not None:
            points.append((float(c.params[x_key]), r))
    points.sort(key=lambda p: p[0])
    if not points:
        return []
    color, style = e.color_of(group[0]), e.style_of(group[0])
    xs = [p for p, _ in points]
    ys = [positive(r[stat]) if log else float(r[stat]) for _, r in points]
    err = [2.0 * float(r.get(f"{stat}_se") or 0.0) for _, r in points]
    if log:  # the bar's lower end stays above 0 on a log axis
        low = [min(s, 0.999 * y) if math.isfinite(y) else 0.0 for y, s in zip(ys, err, strict=True)]
        yerr: Any = [low, err]
    else:
        yerr = err
    line, _, _ = ax.errorbar(
        xs,
        ys,
        yerr=yerr,
        color=color,
        ls=style,
        lw=1.4,
        marker="o",
        ms=4,
        capsize=2.5,
        elinewidth=0.9,
        zorder=2,
    )
    line.set_gid(f"mc:{q}")  # names the artists in an SVG, and for tests
    hollow = [(px, py) for (px, r), py in zip(points, ys, strict=True) if censored(r)]
    if hollow:
        ax.plot(
            *zip(*hollow, strict=True),
            ls="none",
            marker="o",
            ms=4,
            mfc="white",
            mec=color,
            zorder=3,
        )
    theory = [(px, theory_of(r, stat)) for px, r in points]
    tx = [px for px, t in theory if math.isfinite(t) and (not log or t > 0)]
    ty = [t for _, t in theory if math.isfinite(t) and (not log or t > 0)]
    if tx:
        ax.plot(tx, ty, **THEORY_STYLE, zorder=4, gid=f"theory:{q}")
    return xs


def _x_scale(ax: Axes, xs: list[float]) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    if not log_scale_wanted(xs, 16.0):  # widths 8..1024 yes, sigma_w 0.5..6 no
        return
    powers_of_two = all(
        v > 0 and float(v).is_integer() and (int(v) & (int(v) - 1)) == 0 for v in xs
    )
    ax.set_xscale("log", base=2 if powers_of_two else 10)
    distinct = sorted(set(xs))
    if len(distinct) <= 12:
        ax.xaxis.set_major_locator(FixedLocator(distinct))
        ax.xaxis.set_minor_locator(NullLocator())
        formatter = ScalarFormatter()
        formatter.set_scientific(False)
        ax.xaxis.set_major_formatter(formatter)
        if sum(len(fmt_value(v)) + 1 for v in distinct) > 40:  # more than fits flat
            ax.tick_params(axis="x", labelrotation=45)


def _figure(
    rows: list[list[ConfigCurves]],
    x_key: str,
    quantities: list[str],
    stat: str,
    layer: int | None,
    e: Encoding,
    note: str,
) -> Figure:
    from matplotlib.lines import Line2D

    nrows, ncols = len(rows), len(quantities)
    fig = new_figure(3.5 * ncols + 2.3, 2.7 * nrows + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    any_censored = False
    for i, row in enumerate(rows):
        for j, q in enumerate(quantities):
            ax = axes[i][j]
            records = [r for c in row if (r := _at(c, q, layer)) is not None and r["n_finite"]]
            any_censored |= any(censored(r) for r in records)
            nonneg = stat != "mean"
            values = [
                positive(r.get(stat)) if nonneg else float(r.get(stat) or math.nan) for r in records
            ]
            log = log_scale_wanted(values)
            xs: list[float] = []
            for group in _series(row, e):
                xs += _draw(ax, group, x_key, q, stat, layer, e, log)
            if log:
                ax.set_yscale("log")
                fit_log_limits(ax)
            _x_scale(ax, xs)
            ax.grid(True, which="major", alpha=0.25, lw=0.6)
            open_frame(ax)
            name = _layer_name(q, layer, {c.depth for c in row})
            ax.set_ylabel(stat_label(stat, q, name.split(" ")[0]))
            title = f"{quantity_name(q).split(' $')[0]} at layer {name}"
            if e.rows:
                title = f"{e.row_title(row[0])}: {title}"
            ax.set_title(title)
            if i == nrows - 1:
                ax.set_xlabel(axis_label(x_key))
    e.colorbar(fig, axes)
    handles: list[Any] = e.legend_handles(linewidth=1.4)
    handles += [
        Line2D([], [], color="0.4", lw=1.4, marker="o", ms=4, label="Monte Carlo ±2 SE"),
        Line2D([], [], **THEORY_STYLE, label=theory_label(stat)),
    ]
    if any_censored:
        handles.append(
            Line2D(
                [],
                [],
                color="0.4",
                ls="none",
                marker="o",
                ms=4,
                mfc="white",
                label="censored: some trials\nnon-finite or collapsed",
            )
        )
    figure_legend(fig, handles, note)
    return fig
