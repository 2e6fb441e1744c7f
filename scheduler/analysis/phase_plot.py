"""The order-to-chaos phase diagram over a (sigma_w, sigma_b) grid: measured, with theory on top.

Per group of configurations (one row of panels per activation, depth, ...):

- with pair observables (batch >= 2, inputs of correlation c^0): the measured correlation of
  the two inputs' preactivations at the last layer, c^D (1 in the ordered phase, where inputs
  collapse together; c* < 1 in the chaotic phase, Poole et al. 2016), and the depth scale xi_c
  fitted from the measured |c^l - c*| decay (`pair_theory`: weighted log-linear fit with SE;
  grey where the decay cannot be fitted), under the theory's xi_c contours (Schoenholz et al.
  2017: xi_c diverges on the critical line);
- without them: log10 E[mean_sq(h^D)], its colour range the 2nd..98th percentile of the cells
  (arrows mark cells beyond), so one vanishing corner does not flatten the map;
- always: log10 of the gradient ratio E|dL/dz^1|^2 / E|dL/dz^D|^2 on a diverging scale
  (vanishing below 0, exploding above);
- on every panel, the mean-field critical line chi_1 = 1 (`theory.critical_sigma_w`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from scheduler.analysis.figures import ConfigCurves, new_figure, positive, varying
from scheduler.analysis.figures import fmt_value as _fmt
from scheduler.analysis.theory import critical_sigma_w, depth_scales, fit_depth_scale
from scheduler.errors import UserError
from worker.contract import Scheme

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["phase_of"]

_XI_LEVELS = (2.0, 5.0, 10.0, 20.0, 50.0)  # theory xi_c contours, layers


def phase_of(configs: list[ConfigCurves]) -> Figure:
    """The phase diagram of `configs` (module docstring); UserError without a 2 x 2 grid."""
    import numpy as np

    axes_seen = sorted({k for c in configs for k in c.params})
    if not all("sigma_w" in c.params for c in configs):
        raise UserError(
            "plot phase: expected a sweep over sigma_w and sigma_b axes (as in "
            "examples/phase_diagram.yaml). Received configurations with columns: "
            + ", ".join(axes_seen)
        )
    sws = sorted({float(c.params["sigma_w"]) for c in configs})
    sbs = sorted({_sigma_b(c) for c in configs})
    if len(sws) < 2 or len(sbs) < 2:
        raise UserError(
            "plot phase: expected at least 2 values of both sigma_w and sigma_b. "
            f"Received sigma_w {', '.join(map(_fmt, sws))}; sigma_b {', '.join(map(_fmt, sbs))}"
        )
    others = [k for k in varying(configs) if k not in ("sigma_w", "sigma_b", "bias_std", "init")]
    others = [k for k in others if k != "label"]
    groups: dict[str, list[ConfigCurves]] = {}
    for c in configs:
        groups.setdefault(" · ".join(f"{k}={_fmt(c.params[k])}" for k in others), []).append(c)
    pairs = any(_top_corr(c) is not None for c in configs)
    n_cols = 3 if pairs else 2
    fig = new_figure(6.2 * n_cols, 4.6 * len(groups) + 0.5)
    axes = fig.subplots(len(groups), n_cols, squeeze=False)
    shape = (len(sbs), len(sws))
    for i, (title, group) in enumerate(groups.items()):
        act_label = str(group[0].params["activation"])
        activation = group[0].config.activation if group[0].config is not None else None
        depth = max(c.depth for c in group)
        cells = {(sbs.index(_sigma_b(c)), sws.index(float(c.params["sigma_w"]))): c for c in group}
        ratio = _grid(shape, cells, _gradient_ratio)
        panels: list[tuple[Any, ...]] = []
        if pairs:
            fits = {key: _xi_columns(c) for key, c in cells.items()}
            c_top = _grid(shape, cells, _top_corr)
            xi = _grid(shape, fits, lambda f: f.get("xi_c_fit"))
            xi_theory = _grid(shape, fits, lambda f: f.get("theory_xi_c"))
            c0 = group[0].config.input_corr if group[0].config is not None else None
            c0_text = "" if c0 is None else f", $c^0 = {c0:g}$"
            panels.append(
                (c_top, rf"measured $c^D$ (preactivations{c0_text})", "viridis", "unit", None)
            )
            panels.append(
                (
                    xi,
                    r"measured $\xi_c$ (layers; fit of $|c^l - c^*|$)",
                    "cividis",
                    "log",
                    xi_theory,
                )
            )
        else:
            final = _grid(shape, cells, _log_top_mean_sq)
            label = r"$\log_{10}\,E[\mathrm{mean\_sq}(h^D)]$" + f" (D = {depth})"
            panels.append((final, label, "viridis", "robust", None))
        panels.append(
            (
                ratio,
                r"$\log_{10}$ gradient ratio $E|\partial L/\partial z^1|^2\,/\,"
                r"E|\partial L/\partial z^D|^2$",
                "RdBu_r",
                "diverging",
                None,
            )
        )
        critical = _critical_line(activation, sbs)
        for ax, (data, label, cmap, kind, contours) in zip(axes[i], panels, strict=True):
            _panel(fig, ax, np.asarray(data), sws, sbs, label, cmap, kind, contours)
            if critical is not None:
                ax.plot(*critical, color="k", lw=2.0, ls="--", label=r"$\chi_1 = 1$ (mean field)")
                ax.legend(loc="upper left", fontsize=8, framealpha=0.85)
                _phase_labels(ax, critical, sws, sbs)
            ax.set_xlim(_edges(sws)[0], _edges(sws)[-1])
            ax.set_ylim(_edges(sbs)[0], _edges(sbs)[-1])
            ax.set_xlabel(r"$\sigma_w$   ($W \sim N(0, \sigma_w^2/\mathrm{fan\_in})$)")
            ax.set_ylabel(r"$\sigma_b$   ($b \sim N(0, \sigma_b^2)$)")
            head = f"{act_label}, depth {depth}" + (f" · {title}" if title else "")
            ax.set_title(head, fontsize=10)
    fig.suptitle("Order-to-chaos phase diagram (Poole et al. 2016; Schoenholz et al. 2017)")
    return fig


def _panel(
    fig: Figure,
    ax: Axes,
    data: Any,
    sws: Sequence[float],
    sbs: Sequence[float],
    label: str,
    cmap: str,
    kind: str,
    contours: Any,
) -> None:
    """One heat map on its colour scale, masked cells grey, theory contours over it."""
    import numpy as np
    from matplotlib.colors import LogNorm, Normalize, TwoSlopeNorm

    finite = data[np.isfinite(data)]
    norm: Normalize | None = None
    extend = "neither"
    if finite.size and kind == "diverging":
        lim = max(abs(float(finite.min())), abs(float(finite.max())), 1e-3)
        norm = TwoSlopeNorm(vcenter=0.0, vmin=-lim, vmax=lim)
    elif finite.size and kind == "robust":
        lo, hi = np.percentile(finite, [2.0, 98.0])
        hi = max(float(hi), float(lo) + 1e-3)
        norm = Normalize(vmin=float(lo), vmax=hi)
        extend = _extend(finite, float(lo), hi)
    elif finite.size and kind == "unit":
        norm = Normalize(vmin=min(0.0, float(finite.min())), vmax=1.0)
    elif kind == "log":
        positive_cells = finite[finite > 0]
        if positive_cells.size:
            lo, hi = float(positive_cells.min()), float(positive_cells.max())
            norm = LogNorm(vmin=lo, vmax=max(hi, lo * 1.5))
        data = np.where(data > 0, data, np.nan)
    ax.set_facecolor("0.85")  # cells without a value
    mesh = ax.pcolormesh(
        _edges(sws), _edges(sbs), np.ma.masked_invalid(data), cmap=cmap, norm=norm, shading="flat"
    )
    fig.colorbar(mesh, ax=ax, label=label, pad=0.01, extend=extend)
    if contours is not None:
        levels = np.asarray(contours, dtype=float)
        levels = np.where(levels > 0, levels, np.nan)
        shown = [v for v in _XI_LEVELS if np.nanmin(levels, initial=np.inf) < v]
        shown = [v for v in shown if np.nanmax(levels, initial=-np.inf) > v]
        if shown and np.isfinite(levels).sum() >= 4:
            lines = ax.contour(
                list(sws), list(sbs), levels, levels=shown, colors="white", linewidths=1.2
            )
            ax.clabel(lines, fmt=lambda v: rf"$\xi_c$={v:g}", fontsize=7)


def _extend(finite: Any, lo: float, hi: float) -> str:
    below, above = bool((finite < lo).any()), bool((finite > hi).any())
    return "both" if below and above else "min" if below else "max" if above else "neither"


def _grid(shape: tuple[int, int], cells: dict[tuple[int, int], Any], value: Any) -> Any:
    import numpy as np

    out = np.full(shape, np.nan)
    for key, c in cells.items():
        v = value(c)
        if v is not None and math.isfinite(float(v)):
            out[key] = float(v)
    return out


def _top_corr(c: ConfigCurves) -> float | None:
    top = c.get(c.depth, "preactivation")
    return None if top is None or top.get("corr") is None else float(top["corr"])


def _log_top_mean_sq(c: ConfigCurves) -> float | None:
    top = c.get(c.depth, "activation")
    if top is None or top["mean_sq"] is None or not float(top["mean_sq"]) > 0:
        return None
    return math.log10(float(top["mean_sq"]))


def _gradient_ratio(c: ConfigCurves) -> float | None:
    g1, gd = c.get(1, "gradient"), c.get(c.depth, "gradient")
    if not (g1 and gd and positive(g1["mean_sq"]) > 0 and positive(gd["mean_sq"]) > 0):
        return None
    return math.log10(float(g1["mean_sq"]) / float(gd["mean_sq"]))


def _xi_columns(c: ConfigCurves) -> dict[str, Any]:
    """theory_xi_c and xi_c_fit of a cell: the measured preactivation |c^l - c*| decay fitted
    (`theory.fit_depth_scale`, as `pair_theory` does), c* and xi_c from `theory.depth_scales`
    (no per-layer map: a cell costs the fixed point only)."""
    if c.config is None:
        return {}
    c_star, xi_c = depth_scales(c.config)
    out: dict[str, Any] = {"theory_xi_c": xi_c, "xi_c_fit": None}
    rows = [
        r
        for r in c.series("preactivation")
        if int(r["layer"]) >= 1 and r.get("corr") is not None and r.get("corr_se") is not None
    ]
    if c_star is not None and len(rows) >= 3:
        fit = fit_depth_scale(
            [float(r["layer"]) for r in rows],
            [float(r["corr"]) for r in rows],
            [float(r["corr_se"]) for r in rows],
            c_star,
        )
        out["xi_c_fit"] = fit.xi
    return out


def _sigma_b(c: ConfigCurves) -> float:
    value = c.params.get("sigma_b", c.params.get("bias_std", 0.0))
    return float(value or 0.0)


def _edges(values: Sequence[float]) -> list[float]:
    if len(values) == 1:
        return [values[0] - 0.5, values[0] + 0.5]
    mids = [(a + b) / 2.0 for a, b in itertools.pairwise(values)]
    return [values[0] - (mids[0] - values[0]), *mids, values[-1] + (values[-1] - mids[-1])]


def _critical_line(
    activation: Scheme | None, sbs: Sequence[float]
) -> tuple[list[float], list[float]] | None:
    """The chi_1 = 1 line of `activation` over the sigma_b range: only true crossings
    (`critical_sigma_w`), a gap (NaN, which matplotlib does not join) where there is none;
    None when there is no crossing at all or the activation is unknown."""
    if activation is None:
        return None
    lo, hi = _edges(sbs)[0], _edges(sbs)[-1]
    ys = [max(0.0, lo) + (hi - max(0.0, lo)) * k / 60 for k in range(61)]
    xs = [critical_sigma_w(sb, activation) for sb in ys]
    if all(x is None for x in xs):
        return None
    return [math.nan if x is None else x for x in xs], ys


def _phase_labels(
    ax: Axes, critical: tuple[list[float], list[float]], sws: Sequence[float], sbs: Sequence[float]
) -> None:
    drawn = [(x, y) for x, y in zip(*critical, strict=True) if math.isfinite(x)]
    x, y = drawn[len(drawn) // 2]
    box = {"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.75}
    if x - sws[0] > 0.15 * (sws[-1] - sws[0]):
        ax.text((sws[0] + x) / 2, y, "ordered", ha="center", va="center", fontsize=9, bbox=box)
    if sws[-1] - x > 0.15 * (sws[-1] - sws[0]):
        ax.text((sws[-1] + x) / 2, y, "chaotic", ha="center", va="center", fontsize=9, bbox=box)
