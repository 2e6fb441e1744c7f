"""Figures of a sweep's records (matplotlib, Agg, object API; imported on first use).

Each kind takes the records of `scheduler.query.theory_records` (plain `result_records` plot
without the theory overlays) and writes one PNG:

- `layers`:    per-layer std over units (mean over trials, log scale) of activations and
               gradients, ±2 SE bands, the theory sqrt(E[std^2]) dashed; one row per activation.
- `explosion`: configurations x layers: fraction of trials whose forward pass was non-finite at or
               before each layer, and fraction collapsed to exactly 0, with the predicted layers.
- `phase`:     a (sigma_w, sigma_b) grid: log10 of the last layer's E[mean_sq(h)] and of the
               gradient ratio E|g^1|^2 / E|g^D|^2, with the critical line chi_1 = 1 of the theory.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scheduler.analysis.compare import THEORY_KEYS
from scheduler.analysis.records import STAT_KEYS, config_of
from scheduler.analysis.theory import DTYPE_LIMITS, critical_sigma_w
from scheduler.errors import UserError
from scheduler.formatting import number
from worker.contract import Scheme

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["KINDS", "plot", "plot_explosion", "plot_layers", "plot_phase", "plot_png"]

Record = Mapping[str, Any]

# Columns of a record that are not its configuration's parameters or axis values.
_STAT_KEYS = frozenset(
    {"sweep_id", "config_hash", "layer", "quantity", "input_dim", "sampler"}
    | {*STAT_KEYS, *THEORY_KEYS}
)
_MAX_LINES = 10  # lines per panel before a row facet (or a colormap) takes over
_DPI = 110


class _Config:
    """The records of one configuration, by (layer, quantity)."""

    def __init__(self, head: Record) -> None:
        self.hash = str(head["config_hash"])
        self.config = config_of(head)
        self.params = {k: v for k, v in head.items() if k not in _STAT_KEYS}
        # sigma_w / sigma_b axes are sugar for init / bias: label by the axis the user wrote
        if "sigma_w" in self.params:
            self.params.pop("init", None)
        if "sigma_b" in self.params:
            self.params.pop("bias_std", None)
        self.depth = int(head["depth"])
        self.by_key: dict[tuple[int, str], Record] = {}
        self.overflow: float | None = head.get("theory_overflow_layer")
        self.underflow: float | None = head.get("theory_underflow_layer")

    def get(self, layer: int, quantity: str) -> Record | None:
        return self.by_key.get((layer, quantity))

    def series(self, quantity: str) -> list[Record]:
        return sorted(
            (r for (_, q), r in self.by_key.items() if q == quantity), key=lambda r: r["layer"]
        )


def _configs(records: Iterable[Record]) -> list[_Config]:
    out: dict[str, _Config] = {}
    for r in records:
        c = out.get(str(r["config_hash"]))
        if c is None:
            c = out[str(r["config_hash"])] = _Config(r)
        c.by_key[(int(r["layer"]), str(r["quantity"]))] = r
    if not out:
        raise UserError("plot: the sweep has no results yet (no chunk has finished)")
    return list(out.values())


def _varying(configs: Sequence[_Config]) -> list[str]:
    """Parameter keys whose value differs between configurations (first-seen order)."""
    keys: dict[str, None] = {}
    for c in configs:
        keys.update(dict.fromkeys(c.params))
    return [k for k in keys if len({repr(c.params.get(k)) for c in configs}) > 1]


def _fmt(value: Any) -> str:
    return number(value, 6)


def _shorten(text: str, n: int = 56) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _legend(c: _Config, keys: Sequence[str]) -> str:
    """What tells `c` apart from the other lines: the values of the varying `keys`."""
    if "label" in keys and c.params.get("label"):
        return _shorten(str(c.params["label"]))
    parts = [
        _fmt(c.params[k]) if k in ("init", "activation") else f"{k}={_fmt(c.params[k])}"
        for k in keys
        if k in c.params
    ]
    return _shorten(" · ".join(parts) or c.hash[:8])


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def _positive(x: Any) -> float:
    return float(x) if x is not None and float(x) > 0.0 and math.isfinite(float(x)) else math.nan


# --------------------------------------------------------------------------------- layers


def _theory_std(r: Record) -> float:
    std = r.get("theory_std")
    if std is None and r.get("theory_mean_sq") is not None:
        std = math.sqrt(max(0.0, float(r["theory_mean_sq"])))
    return _positive(std)


def _draw_layers(ax: Axes, c: _Config, quantity: str, color: Any, label: str) -> bool:
    """One configuration's curve, band and theory on `ax`; False when there is nothing to draw."""
    series = [r for r in c.series(quantity) if int(r["n_finite"]) >= 1 and r["std"] is not None]
    if not series:
        return False
    xs = [int(r["layer"]) for r in series]
    ys = [_positive(r["std"]) for r in series]
    se = [float(r["std_se"] or 0.0) for r in series]
    censored = [
        int(r["n_finite"]) < int(r["n_trials"]) or int(r["n_collapsed"]) > 0 for r in series
    ]
    clean_y = [y if not cens else math.nan for y, cens in zip(ys, censored, strict=True)]
    marker = "o" if len(xs) <= 5 else None  # a 1-layer network is two points
    ax.plot(xs, clean_y, color=color, lw=1.6, label=label, marker=marker, ms=4)
    if any(censored):
        # censored layers (some trials non-finite or collapsed): the average of the rest, faint
        first = next(i for i, cens in enumerate(censored) if cens)
        start = max(0, first - 1)
        ax.plot(xs[start:], ys[start:], color=color, lw=1.0, ls=":", marker=marker, ms=3)
    lo = [max(y - 2 * s, y * 1e-3) for y, s in zip(ys, se, strict=True)]
    hi = [y + 2 * s for y, s in zip(ys, se, strict=True)]
    ax.fill_between(xs, lo, hi, color=color, alpha=0.22, lw=0)
    theory = [(int(r["layer"]), _theory_std(r)) for r in c.series(quantity)]
    if any(math.isfinite(t) for _, t in theory):
        tx, ty = [x for x, _ in theory], [t for _, t in theory]
        # black, on top: where Monte Carlo and theory agree the dashes still show
        ax.plot(tx, ty, color="k", lw=0.9, ls=(0, (3, 2)), alpha=0.8, zorder=3)
        if marker:
            ax.plot(tx, ty, color=color, ls="none", marker="x", ms=6, zorder=3)
    return True


_Y_FLOOR, _Y_CEILING = 1e-300, 1e300


def _dtype_limit(ax: Axes, dtypes: set[str]) -> None:
    """A dotted line at the largest finite value of the configurations' dtype, when in view."""
    top = ax.get_ylim()[1]
    for dtype in sorted(dtypes):
        big = DTYPE_LIMITS.get(dtype, (math.inf,))[0]
        if big < top:
            ax.axhline(big, color="0.45", lw=0.9, ls="-.", zorder=0)
            ax.annotate(
                f"{dtype} max",
                (0.01, big),
                xycoords=("axes fraction", "data"),
                fontsize=7,
                color="0.35",
                va="bottom",
            )


def _facets(configs: list[_Config], varying: list[str]) -> tuple[str | None, list[list[_Config]]]:
    """Configurations split into rows: by activation when it varies, else (when there are many
    lines) by the varying key with the fewest values."""
    row_key: str | None = None
    if "activation" in varying:
        row_key = "activation"
    elif len(configs) > _MAX_LINES:
        candidates = [k for k in varying if k not in ("label", "depth")]
        if candidates:
            row_key = min(candidates, key=lambda k: len({_fmt(c.params[k]) for c in configs}))
    if row_key is None:
        return None, [configs]
    rows: dict[str, list[_Config]] = {}
    for c in configs:
        rows.setdefault(_fmt(c.params.get(row_key)), []).append(c)
    return row_key, list(rows.values())


def _deepest(configs: list[_Config], varying: list[str]) -> tuple[list[_Config], bool]:
    """Keep the deepest of configurations that differ only in depth (forward statistics at layer
    l do not depend on the depth below it; the deepest shows the longest profile)."""
    if "depth" not in varying:
        return configs, False
    others = [k for k in varying if k not in ("depth", "label")]
    best: dict[tuple[str, ...], _Config] = {}
    for c in configs:
        key = tuple(_fmt(c.params.get(k)) for k in others)
        if key not in best or c.depth > best[key].depth:
            best[key] = c
    kept = [c for c in configs if c in best.values()]
    return kept, len(kept) < len(configs)


def plot_layers(records: Iterable[Record], path: str | Path) -> Path:
    """Per-layer std of activations and gradients (log y), ±2 SE, theory dashed; PNG at `path`."""
    return save_figure(_layers_figure(_configs(records)), path)


def _layers_figure(all_configs: list[_Config]) -> Figure:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

    varying = _varying(all_configs)
    configs, reduced = _deepest(all_configs, varying)
    present = [q for q in ("activation", "gradient") if any(c.series(q) for c in configs)]
    quantities = present or ["activation"]
    row_key, rows = _facets(configs, varying)
    line_keys = [k for k in varying if k != row_key and not (reduced and k == "depth")]
    nrows, ncols = len(rows), len(quantities)
    fig = _new_figure(5.6 * ncols + 3.4, 3.3 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    titles = {
        "activation": r"activations $h^l$: std over units",
        "gradient": r"gradients $\partial L/\partial z^l$: std over units",
    }
    for i, row in enumerate(rows):
        colors = _colors(len(row))
        handles: list[Any] = []
        for j, quantity in enumerate(quantities):
            ax = axes[i][j]
            for c, color in zip(row, colors, strict=True):
                drawn = _draw_layers(ax, c, quantity, color, _legend(c, line_keys))
                if drawn and j == 0:
                    handles.append(Line2D([], [], color=color, lw=1.6, label=_legend(c, line_keys)))
            ax.set_yscale("log")
            # values may span float64 (std 1e-150 .. 1e300): matplotlib's log margins and ticks
            # overflow past ~1e300, so the view stops there (the data are not changed)
            bottom, top = ax.get_ylim()
            bottom, top = max(bottom, _Y_FLOOR), min(top, _Y_CEILING)
            ax.set_ylim(bottom, top)
            low, high = math.ceil(math.log10(bottom)), math.floor(math.log10(top))
            if high - low > 30:  # LogLocator's stride would step past float64: fixed decades
                step = math.ceil((high - low) / 8)
                ax.yaxis.set_major_locator(
                    FixedLocator([10.0**k for k in range(low, high + 1, step)])
                )
                ax.yaxis.set_minor_locator(NullLocator())
            _dtype_limit(ax, {str(c.params.get("dtype", "float32")) for c in row})
            ax.grid(True, which="major", alpha=0.3)
            ax.set_ylabel("std (mean over trials)")
            title = titles[quantity]
            if row_key is not None:
                title = f"{row_key} = {_fmt(row[0].params.get(row_key))} — {title}"
            ax.set_title(title, fontsize=10)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            lo, hi = ax.get_xlim()
            if hi - lo < 3.0:  # a 1-layer network: half a layer either side of its points
                ax.set_xlim(math.floor(lo + 0.5) - 0.5, math.ceil(hi - 0.5) + 0.5)
            if i == nrows - 1:
                ax.set_xlabel("layer l")
        style = [
            Line2D([], [], color="0.3", lw=1.6, label="Monte Carlo"),
            Patch(color="0.3", alpha=0.22, label="±2 SE"),
            Line2D([], [], color="k", lw=0.9, ls=(0, (3, 2)), label="mean-field theory"),
            Line2D([], [], color="0.3", lw=1.0, ls=":", label="censored (non-finite/collapsed)"),
        ]
        ncol = 1 if len(handles) <= 14 else 2
        axes[i][-1].legend(
            handles=handles + style,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            fontsize=7.5,
            ncol=ncol,
            frameon=False,
        )
    suptitle = "Signal propagation at initialization: per-layer std, Monte Carlo vs theory"
    if reduced:
        suptitle += "\n(deepest configuration of each group shown)"
    fig.suptitle(suptitle, fontsize=12)
    return fig


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    if n <= 10:
        cmap = colormaps["tab10"]
        return [cmap(i) for i in range(n)]
    cmap = colormaps["viridis"]
    return [cmap(i / max(1, n - 1) * 0.92) for i in range(n)]


# ------------------------------------------------------------------------------ explosion


def plot_explosion(records: Iterable[Record], path: str | Path) -> Path:
    """Heatmaps configurations x layers of overflow (at or before) and collapse; PNG at `path`."""
    return save_figure(_explosion_figure(_configs(records)), path)


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


def _sigma_b(c: _Config) -> float:
    value = c.params.get("sigma_b", c.params.get("bias_std", 0.0))
    return float(value or 0.0)


def _edges(values: Sequence[float]) -> list[float]:
    if len(values) == 1:
        return [values[0] - 0.5, values[0] + 0.5]
    mids = [(a + b) / 2.0 for a, b in itertools.pairwise(values)]
    return [values[0] - (mids[0] - values[0]), *mids, values[-1] + (values[-1] - mids[-1])]


def plot_phase(records: Iterable[Record], path: str | Path) -> Path:
    """Order-to-chaos map over a (sigma_w, sigma_b) grid with the chi_1 = 1 line; PNG at `path`."""
    return save_figure(_phase_figure(_configs(records)), path)


def _phase_figure(configs: list[_Config]) -> Figure:
    import numpy as np
    from matplotlib.colors import Normalize, TwoSlopeNorm

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
    others = [k for k in _varying(configs) if k not in ("sigma_w", "sigma_b", "bias_std", "init")]
    others = [k for k in others if k != "label"]
    groups: dict[str, list[_Config]] = {}
    for c in configs:
        groups.setdefault(" · ".join(f"{k}={_fmt(c.params[k])}" for k in others), []).append(c)
    fig = _new_figure(12.5, 4.6 * len(groups) + 0.5)
    axes = fig.subplots(len(groups), 2, squeeze=False)
    for i, (title, group) in enumerate(groups.items()):
        act_label = str(group[0].params["activation"])
        activation = group[0].config.activation if group[0].config is not None else None
        depth = max(c.depth for c in group)
        final = np.full((len(sbs), len(sws)), np.nan)
        ratio = np.full((len(sbs), len(sws)), np.nan)
        for c in group:
            yi, xi = sbs.index(_sigma_b(c)), sws.index(float(c.params["sigma_w"]))
            top = c.get(c.depth, "activation")
            if top is not None and top["mean_sq"] is not None and float(top["mean_sq"]) > 0:
                final[yi, xi] = math.log10(float(top["mean_sq"]))
            g1, gd = c.get(1, "gradient"), c.get(c.depth, "gradient")
            if g1 and gd and _positive(g1["mean_sq"]) > 0 and _positive(gd["mean_sq"]) > 0:
                ratio[yi, xi] = math.log10(float(g1["mean_sq"]) / float(gd["mean_sq"]))
        critical = _critical_line(activation, sbs)
        spec = [
            (
                axes[i][0],
                final,
                r"$\log_{10}\,E[\mathrm{mean\_sq}(h^D)]$, last layer" + f" (D = {depth})",
                "viridis",
                None,
            ),
            (
                axes[i][1],
                ratio,
                r"$\log_{10}$ gradient ratio $E|\partial L/\partial z^1|^2\,/\,"
                r"E|\partial L/\partial z^D|^2$",
                "RdBu_r",
                "diverging",
            ),
        ]
        for ax, data, label, cmap, kind in spec:
            finite = data[np.isfinite(data)]
            norm: Normalize | None = None
            if kind == "diverging" and finite.size:
                lim = max(abs(float(finite.min())), abs(float(finite.max())), 1e-3)
                norm = TwoSlopeNorm(vcenter=0.0, vmin=-lim, vmax=lim)
            mesh = ax.pcolormesh(
                _edges(sws),
                _edges(sbs),
                np.ma.masked_invalid(data),
                cmap=cmap,
                norm=norm,
                shading="flat",
            )
            fig.colorbar(mesh, ax=ax, label=label, pad=0.01)
            if critical is not None:
                ax.plot(
                    critical[0],
                    critical[1],
                    color="k",
                    lw=2.0,
                    ls="--",
                    label=r"$\chi_1 = 1$ (mean-field theory)",
                )
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


# ---------------------------------------------------------------------------------- entry

_FIGURES: dict[str, Callable[[list[_Config]], Figure]] = {
    "layers": _layers_figure,
    "explosion": _explosion_figure,
    "phase": _phase_figure,
}
KINDS: tuple[str, ...] = tuple(_FIGURES)


def figure(kind: str, records: Iterable[Record]) -> Figure:
    """The figure `kind` (one of `KINDS`) of `records` (rows with theory columns)."""
    if kind not in _FIGURES:
        raise UserError(f"plot --kind: expected one of {', '.join(KINDS)}. Received: {kind!r}")
    return _FIGURES[kind](_configs(records))


FORMATS: dict[str, str] = {".png": "png", ".pdf": "pdf", ".svg": "svg"}


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` to `path` in the format its extension names (`FORMATS`)."""
    out = Path(path)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise UserError(
            f"plot output {str(out)!r}: unknown extension {out.suffix!r}; expected one of "
            + ", ".join(FORMATS)
        )
    try:
        fig.savefig(out, format=fmt, dpi=_DPI)
    except OSError as exc:
        raise UserError(f"plot output {str(out)!r}: cannot write. Received: {exc}") from exc
    return out


def plot(kind: str, records: Iterable[Record], path: str | Path) -> Path:
    """Write the figure `kind` (layers, explosion, phase) of `records` at `path` (PNG, PDF or
    SVG by the extension)."""
    return save_figure(figure(kind, records), path)


def plot_png(kind: str, records: Iterable[Record]) -> bytes:
    """The figure `kind` of `records` as PNG bytes (for embedding)."""
    buf = io.BytesIO()
    figure(kind, records).savefig(buf, format="png", dpi=_DPI)
    return buf.getvalue()
