"""The `quantiles` figure: per-layer quantile bands of the per-trial mean_sq against its mean.

Per (configuration, layer) the records give the mean over trials of mean_sq (E[q], with its
standard error) and, from the per-trial histogram, the median and the 5% and 95% quantiles of
q over trials. Each is drawn relative to the theory's E[q] where every record has one (else to
the measured mean), on a log axis, so that every depth and scale reads alike: at finite width the per-trial q is close to log-normal with Var[log q] growing
like depth/width (Hanin & Nica 2019), the median falls below the mean as depth grows, and the
mean is carried by a shrinking upper tail. Where the exact law is known (linear and relu,
Gaussian weights, no bias: `theory.exact_log_mean_sq`), exp(E[log q]) / E[q] of the law is
dashed: the median of a log-normal is its geometric mean.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from scheduler.formatting import config_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["quantiles_figure"]

_PER_PANEL = 4  # configurations overlaid in one panel; more go to further rows
_MAX_ROWS = 4
_TITLES = {
    "preactivation": r"pre-activations: $q^l = \mathrm{mean}_j\,(z^l_j)^2$ per trial",
    "gradient": r"gradients: $\mathrm{mean}_j\,(\partial L/\partial z^l_j)^2$ per trial",
}


def _value(r: Mapping[str, Any], key: str) -> float:
    x = r.get(key)
    return float(x) if x is not None and math.isfinite(float(x)) else math.nan


def _series(rows: Sequence[Mapping[str, Any]], by_theory: bool) -> dict[str, list[float]]:
    """Per layer: quantiles, the mean and its ±2 SE, and the exact law's exp(E log q), all
    divided by the reference: theory's E[q] when `by_theory`, else the mean over trials."""
    out: dict[str, list[float]] = {
        k: [] for k in ("layer", "q05", "median", "q95", "mean", "se_lo", "se_hi", "exact")
    }
    for r in sorted(rows, key=lambda r: int(r["layer"])):
        mean = _value(r, "mean_sq")
        ref = _value(r, "theory_mean_sq") if by_theory else mean
        if not ref > 0.0 or math.isnan(_value(r, "mean_sq_median")):
            continue
        out["layer"].append(float(r["layer"]))
        for key in ("q05", "median", "q95"):
            out[key].append(_value(r, f"mean_sq_{key}") / ref)
        se = _value(r, "mean_sq_se")
        se = 0.0 if math.isnan(se) else se
        out["mean"].append(mean / ref)
        out["se_lo"].append((mean - 2.0 * se) / ref)  # may be <= 0: clipped to the axis
        out["se_hi"].append((mean + 2.0 * se) / ref)
        out["exact"].append(math.exp(_value(r, "theory_log_mean_sq")) / ref)
    return out


def _draw(ax: Axes, data: dict[str, list[float]], color: Any, floor: float) -> None:
    x = data["layer"]
    ax.fill_between(x, data["q05"], data["q95"], color=color, alpha=0.14, lw=0.0)
    ax.plot(x, data["q05"], color=color, lw=0.6, alpha=0.8)
    ax.plot(x, data["q95"], color=color, lw=0.6, alpha=0.8)
    ax.plot(x, data["median"], color=color, lw=1.9)
    lo = [max(v, floor) for v in data["se_lo"]]
    ax.fill_between(x, lo, data["se_hi"], facecolor="none", edgecolor=color, hatch="////", lw=0.0)
    ax.plot(x, data["mean"], color=color, lw=0.8)
    if any(not math.isnan(v) for v in data["exact"]):
        ax.plot(x, data["exact"], color=color, lw=1.1, ls=(0, (2.5, 1.5)))


def _limits(datas: Iterable[dict[str, list[float]]]) -> tuple[float, float]:
    """y limits holding every quantile band and the mean (a factor 1.6 of margin)."""
    lo, hi = 1.0, 1.0
    for d in datas:
        values = [v for k in ("q05", "median", "q95", "se_hi") for v in d[k] if v > 0.0]
        lo, hi = min(lo, *values), max(hi, *values)
    return lo / 1.6, hi * 1.6


_PARAMS = ("label", "init", "sigma_w", "activation", "depth", "width", "bias_std", "dtype")


def _names(heads: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, str], str]:
    """Each configuration's legend (the parameters that differ) and what they share."""
    varying = [k for k in _PARAMS if len({repr(h.get(k)) for h in heads.values()}) > 1]
    first = next(iter(heads.values()))
    shared = config_label(first) if not varying else ""
    if varying:
        same = [f"{k}={first.get(k)}" for k in ("init", "activation", "depth") if k not in varying]
        shared = " · ".join(same)
    names = {
        key: _short(" · ".join(f"{k}={h.get(k)}" for k in varying) or config_label(h))
        for key, h in heads.items()
    }
    return names, shared


def quantiles_figure(records: Iterable[Mapping[str, Any]]) -> Figure:
    """The figure of the module docstring, from result records (with or without theory)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    configs: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    heads: dict[str, Mapping[str, Any]] = {}
    for r in records:
        key = str(r["config_hash"])
        heads.setdefault(key, r)
        configs.setdefault(key, {}).setdefault(str(r["quantity"]), []).append(r)
    drawn = [
        r for by_q in configs.values() for q, rows in by_q.items() if q in _TITLES for r in rows
    ]
    by_theory = bool(drawn) and all(_value(r, "theory_mean_sq") > 0.0 for r in drawn)
    series = {
        key: {q: _series(rows, by_theory) for q, rows in by_q.items() if q in _TITLES}
        for key, by_q in configs.items()
    }
    shown = [k for k, s in series.items() if any(d["layer"] for d in s.values())]
    quantities = [q for q in _TITLES if any(series[k].get(q, {}).get("layer") for k in shown)]
    if not shown:
        fig = Figure(figsize=(9.0, 2.2), dpi=110, layout="constrained")
        ax = fig.subplots()
        ax.axis("off")
        message = (
            "No per-trial distributions in these records\n"
            "(chunks saved before they were recorded, or no finite trial)."
        )
        ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11)
        fig.suptitle("Per-trial quantiles of mean_sq", fontsize=12)
        return fig
    hidden = max(0, len(shown) - _PER_PANEL * _MAX_ROWS)
    shown = shown[: _PER_PANEL * _MAX_ROWS]
    rows = [shown[i : i + _PER_PANEL] for i in range(0, len(shown), _PER_PANEL)]
    labels, shared = _names({k: heads[k] for k in shown})
    fig = Figure(
        figsize=(5.4 * len(quantities) + 3.6, 3.4 * len(rows) + 0.9),
        dpi=110,
        layout="constrained",
    )
    axes = fig.subplots(len(rows), len(quantities), squeeze=False, sharex=True)
    cmap = colormaps["tab10"]
    for i, row in enumerate(rows):
        for j, quantity in enumerate(quantities):
            ax = axes[i][j]
            datas = [(n, series[k][quantity]) for n, k in enumerate(row) if quantity in series[k]]
            datas = [(n, d) for n, d in datas if d["layer"]]
            floor, top = _limits(d for _, d in datas)
            for n, data in datas:
                _draw(ax, data, cmap(n), floor)
            ax.axhline(1.0, color="0.25", lw=0.8)
            ax.set_yscale("log")
            ax.set_ylim(floor, top)
            ax.grid(True, which="major", alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(r"per-trial value / " + (r"theory $E\,q$" if by_theory else "mean"))
            if i == 0:
                ax.set_title(_TITLES[quantity], fontsize=10)
            if i == len(rows) - 1:
                ax.set_xlabel("layer l")
        handles: list[Any] = [
            Line2D([], [], color=cmap(n), lw=1.9, label=_short(labels[key]))
            for n, key in enumerate(row)
        ]
        handles += [
            Line2D([], [], color="0.3", lw=1.9, label="median over trials"),
            Patch(color="0.3", alpha=0.14, label="5%–95% of trials"),
            Patch(facecolor="none", edgecolor="0.3", hatch="////", label="mean over trials ±2 SE"),
            Line2D([], [], color="0.25", lw=0.8, label="theory $E\\,q$" if by_theory else "mean"),
            Line2D(
                [], [], color="0.3", lw=1.1, ls=(0, (2.5, 1.5)),
                label=r"exact law: $e^{E \log q} / E\,q$",
            ),
        ]  # fmt: skip
        axes[i][-1].legend(
            handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7.5,
            frameon=False,
        )  # fmt: skip
    title = "Per-trial spread at finite width: median and 5%–95% of mean_sq over trials, against the mean"
    if shared:
        title += f" ({shared})"
    if hidden:
        title += f"\n(first {len(shown)} configurations shown; {hidden} more not drawn)"
    fig.suptitle(title, fontsize=12)
    return fig


def _short(text: str, n: int = 48) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
