"""What every figure of `scheduler.analysis.plots` shares: records grouped by configuration, the
varying axes and how each is drawn (colour, line style, row of panels), the house style, the
notation of statistics, and saving by the file's extension (PNG, PDF, SVG).

Encodings (`encode`): among the varying axes, a colour axis and a line-style axis (at most
`len(STYLES)` values) are chosen to leave the fewest rows of panels; ties go to a numeric colour
axis, then to the colour axis with the most values and the style axis with the fewest. A numeric
colour axis is drawn with a perceptually uniform map (viridis, evenly by rank, with a colourbar
labelled by the values; a continuous colourbar beyond `DISCRETE_COLORS` values), a categorical
one with a qualitative palette in the legend. Every other varying axis (activation always, its
scales differ by orders of magnitude) splits the panels into rows. So two axes never share one
encoding, and every configuration is drawn.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from scheduler.analysis.compare import THEORY_KEYS
from scheduler.analysis.records import STAT_KEYS, config_of
from scheduler.errors import UserError
from scheduler.formatting import number

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure

__all__ = [
    "DISCRETE_COLORS",
    "FIGURE_FORMATS",
    "STATS",
    "STYLES",
    "THEORY_STYLE",
    "ConfigCurves",
    "Encoding",
    "Record",
    "axis_label",
    "caption",
    "configs_of",
    "encode",
    "figure_format",
    "figure_legend",
    "fit_log_limits",
    "fmt_value",
    "house_style",
    "is_numeric",
    "log_scale_wanted",
    "new_figure",
    "open_frame",
    "positive",
    "quantity_name",
    "quantity_symbol",
    "save_figure",
    "stat_label",
    "theory_label",
    "varying",
]

Record = Mapping[str, Any]

# Columns of a record that are not its configuration's parameters or axis values.
_NOT_AXES = frozenset(
    {"sweep_id", "config_hash", "complete", "layer", "quantity", "input_dim", "sampler"}
    | {*STAT_KEYS, *THEORY_KEYS}
)
FIGURE_FORMATS: dict[str, str] = {".png": "png", ".pdf": "pdf", ".svg": "svg"}
PNG_DPI = 200  # PNG files; vector formats have no resolution
STATS = ("std", "mean_sq", "mean")
STYLES: tuple[str, ...] = ("-", "--", ":", "-.")
# Theory: thin black short dashes on top of every curve, whatever its style: where Monte Carlo
# and theory agree the curve's colour still shows between the dashes.
THEORY_STYLE: dict[str, Any] = {"color": "k", "ls": (0, (2.0, 1.5)), "lw": 0.8, "alpha": 0.85}
DISCRETE_COLORS = 16  # up to this many values: one colour per value, a discrete colourbar
_CMAP_RANGE = (0.0, 0.82)  # viridis without its palest yellows (invisible on white)
_RC: dict[str, Any] = {
    "font.size": 9.0,
    "axes.titlesize": 9.0,
    "axes.labelsize": 9.0,
    "xtick.labelsize": 8.0,
    "ytick.labelsize": 8.0,
    "legend.fontsize": 8.0,
    "figure.titlesize": 10.5,
    "axes.linewidth": 0.8,
    "lines.solid_capstyle": "butt",
    "mathtext.fontset": "dejavusans",
}


@contextlib.contextmanager
def house_style() -> Iterator[None]:
    """The fonts and lines every figure is built with (matplotlib's rc_context)."""
    import matplotlib

    with matplotlib.rc_context(cast(Any, _RC)):  # its stubs want literal keys
        yield


def new_figure(width: float, height: float) -> Figure:
    """A Figure (object API, no pyplot state) of `width` x `height` inches, constrained layout."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def figure_format(path: str | Path) -> str:
    """The format of a figure file by its extension: png, pdf or svg (UserError otherwise)."""
    suffix = Path(path).suffix
    fmt = FIGURE_FORMATS.get(suffix.lower())
    if fmt is None:
        what = f"unknown extension {suffix!r}" if suffix else "no extension"
        raise UserError(
            f"figure file {str(path)!r}: {what}; expected a name ending in "
            f"{', '.join(FIGURE_FORMATS)} (the format follows the extension)"
        )
    return fmt


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` to `path` in the format of its extension (.png at 200 dpi, .pdf, .svg).

    PDF embeds TrueType fonts (Type 42, as journals ask); PDF and SVG carry no creation date, so
    the same figure writes the same bytes.
    """
    out = Path(path)
    fmt = figure_format(out)
    metadata: dict[str, Any] = {"png": {}, "pdf": {"CreationDate": None}, "svg": {"Date": None}}[
        fmt
    ]
    import matplotlib

    try:
        with matplotlib.rc_context({"pdf.fonttype": 42, "svg.hashsalt": "initsweep"}):
            fig.savefig(out, format=fmt, dpi=PNG_DPI, metadata=metadata)
    except OSError as exc:
        raise UserError(f"figure file {str(out)!r}: cannot write: {exc.strerror or exc}") from exc
    return out


def fmt_value(value: Any) -> str:
    """An axis value as a legend shows it (6 significant digits; None: an em dash)."""
    return "—" if value is None else number(value, 6)


def positive(x: Any) -> float:
    """`x` as a float when finite and > 0, else NaN (a gap on a log axis)."""
    return float(x) if x is not None and math.isfinite(float(x)) and float(x) > 0.0 else math.nan


def is_numeric(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def log_scale_wanted(values: Iterable[float], factor: float = 10.0) -> bool:
    """Log scale when every finite value is > 0 and they span at least `factor`."""
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and min(finite) > 0.0 and max(finite) >= factor * min(finite)


# ------------------------------------------------------------------------- configurations


class ConfigCurves:
    """The records of one configuration, by (layer, quantity), and its axis values (`params`)."""

    def __init__(self, head: Record) -> None:
        self.hash = str(head["config_hash"])
        self.config = config_of(head)
        self.params = {k: v for k, v in head.items() if k not in _NOT_AXES}
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
        """The records of `quantity`, by layer."""
        return sorted(
            (r for (_, q), r in self.by_key.items() if q == quantity), key=lambda r: r["layer"]
        )


def configs_of(records: Iterable[Record]) -> list[ConfigCurves]:
    """The records grouped by configuration (first-seen order); UserError when there are none."""
    out: dict[str, ConfigCurves] = {}
    for r in records:
        c = out.get(str(r["config_hash"]))
        if c is None:
            c = out[str(r["config_hash"])] = ConfigCurves(r)
        c.by_key[(int(r["layer"]), str(r["quantity"]))] = r
    if not out:
        raise UserError("plot: no records to plot (no chunk has finished, or none matches)")
    return list(out.values())


def varying(configs: Sequence[ConfigCurves]) -> list[str]:
    """Parameter keys whose value differs between configurations (first-seen order)."""
    keys: dict[str, None] = {}
    for c in configs:
        keys.update(dict.fromkeys(c.params))
    return [k for k in keys if len({repr(c.params.get(k)) for c in configs}) > 1]


_FIXED_ORDER = ("activation", "init", "sigma_w", "sigma_b", "depth", "width", "batch", "dtype")


def caption(configs: Sequence[ConfigCurves]) -> str:
    """What every configuration shares: the fixed axes and the number of trials, one line."""
    shared: dict[str, Any] = {}
    for key in configs[0].params:
        values = {repr(c.params.get(key)) for c in configs}
        if len(values) == 1 and key != "label" and configs[0].params[key] is not None:
            shared[key] = configs[0].params[key]
    keys = [k for k in _FIXED_ORDER if k in shared] + [k for k in shared if k not in _FIXED_ORDER]
    parts = [_entry(k, shared[k]) for k in keys]
    trials = sorted(
        {max((int(r["n_trials"]) for r in c.by_key.values()), default=0) for c in configs}
    )
    if trials and trials[-1] > 0:
        parts.append(
            f"{trials[0]} trials" if len(trials) == 1 else f"{trials[0]}–{trials[-1]} trials"
        )
    lines: list[str] = []
    for part in parts:  # wrapped for the legend's title
        if lines and len(lines[-1]) + len(part) + 3 <= 34:
            lines[-1] += " · " + part
        else:
            lines.append(part)
    return "\n".join(lines)


def fit_log_limits(ax: Any) -> None:
    """y limits of a log axis from its curves (gid mc:, censored:, theory:), not from its ±2 SE
    bands or bars, whose lower end may reach 0 (off any log axis) where SE > value/2."""
    ys = [
        float(y)
        for line in ax.get_lines()
        if (line.get_gid() or "").split(":")[0] in ("mc", "censored", "theory")
        for y in line.get_ydata()
        if math.isfinite(float(y)) and float(y) > 0.0
    ]
    if ys:
        # in decades: a float64 run may span 1e-300 .. 1e300, where hi / lo is inf and
        # matplotlib's log margins and tick strides overflow; the view stops at 1e+-300
        lo, hi = math.log10(min(ys)), math.log10(max(ys))
        pad = max(math.log10(1.6), 0.06 * (hi - lo))
        bottom, top = max(lo - pad, -300.0), min(hi + pad, 300.0)
        ax.set_ylim(10.0**bottom, 10.0**top)
        if top - bottom > 30:  # fixed decades: LogLocator's stride would step past float64
            from matplotlib.ticker import FixedLocator, NullLocator

            step = math.ceil((top - bottom) / 8)
            decades = range(math.ceil(bottom), math.floor(top) + 1, step)
            ax.yaxis.set_major_locator(FixedLocator([10.0**k for k in decades]))
            ax.yaxis.set_minor_locator(NullLocator())


def open_frame(ax: Any) -> None:
    """No top and right spines: a line plot's frame (heatmaps keep theirs)."""
    ax.spines[["top", "right"]].set_visible(False)


def figure_legend(fig: Figure, handles: Sequence[Artist], title: str) -> None:
    """The figure's one legend, right of every panel, `title` (the caption) above its entries."""
    legend = fig.legend(
        handles=list(handles),
        loc="outside right upper",
        frameon=False,
        handlelength=2.6,
        title=title or None,
        title_fontsize=8.0,
        alignment="left",
    )
    legend.get_title().set_color("0.25")


# ----------------------------------------------------------------------------- notation

_SYMBOLS = {"preactivation": "z", "activation": "h", "gradient": "g"}
_NAMES = {
    "preactivation": r"pre-activations $z^l$",
    "activation": r"activations $h^l$",
    "gradient": r"gradients $g^l = \partial L/\partial z^l$",
}


def quantity_symbol(quantity: str, layer: str = "l") -> str:
    """`h^l`, `z^l` or `g^l` (mathtext, without dollars) at `layer`."""
    return f"{_SYMBOLS.get(quantity, quantity)}^{{{layer}}}"


def quantity_name(quantity: str) -> str:
    """`activations $h^l$`, ...: a panel's title."""
    return _NAMES.get(quantity, quantity)


def stat_label(stat: str, quantity: str, layer: str = "l") -> str:
    """The y label of `stat` of `quantity`: the trial average E of a statistic over units i."""
    v = quantity_symbol(quantity, layer)
    body = {
        "std": rf"\mathrm{{std}}_i\,{v}_i",
        "mean_sq": rf"\mathrm{{mean}}_i\,({v}_i)^2",
        "mean": rf"\mathrm{{mean}}_i\,{v}_i",
    }[stat]
    return rf"$\mathbb{{E}}\,[{body}]$"


def theory_label(stat: str) -> str:
    """What the theory line is, for the legend (for std: sqrt E[std^2] >= E[std], Jensen)."""
    if stat == "std":
        return r"mean-field theory $\sqrt{\mathbb{E}[\mathrm{std}^2]}$"
    return "mean-field theory"


_AXIS_LABELS = {
    "width": "width n (units per layer)",
    "depth": "depth D (layers)",
    "sigma_w": r"$\sigma_w$  ($W \sim \mathcal{N}(0,\,\sigma_w^2/\mathrm{fan_{in}})$)",
    "sigma_b": r"$\sigma_b$  ($b \sim \mathcal{N}(0,\,\sigma_b^2)$)",
    "bias_std": r"bias std $\sigma_b$",
    "batch": "batch (inputs per trial)",
}


def axis_label(key: str) -> str:
    """An axis as an x label or colourbar label, with its notation."""
    return _AXIS_LABELS.get(key, key)


# ----------------------------------------------------------------------------- encoding


def _values(configs: Sequence[ConfigCurves], key: str) -> list[Any]:
    """The distinct values of `key`: sorted when all numeric, else in first-seen order."""
    seen: dict[str, Any] = {}
    for c in configs:
        seen.setdefault(repr(c.params.get(key)), c.params.get(key))
    values = list(seen.values())
    if all(is_numeric(v) for v in values):
        values.sort()
    return values


@dataclass(frozen=True)
class Encoding:
    """How the varying axes of a figure are drawn: `color`, `style` and the `rows` of panels."""

    color: str | None
    style: str | None
    rows: tuple[str, ...]
    color_values: tuple[Any, ...] = ()
    style_values: tuple[Any, ...] = ()

    @property
    def numeric_color(self) -> bool:
        return bool(self.color_values) and all(is_numeric(v) for v in self.color_values)

    def _index(self, values: tuple[Any, ...], value: Any) -> int:
        return [repr(v) for v in values].index(repr(value))

    def _norm(self) -> Any:
        from matplotlib.colors import LogNorm, Normalize

        lo, hi = float(self.color_values[0]), float(self.color_values[-1])
        if lo > 0.0 and hi >= 10.0 * lo:
            return LogNorm(lo, hi)
        return Normalize(lo, hi if hi > lo else lo + 1.0)

    def color_of(self, c: ConfigCurves) -> Any:
        """The line colour of `c` (one dark blue when no axis is coloured)."""
        return "#1f4e79" if self.color is None else self.color_for(c.params.get(self.color))

    def color_for(self, value: Any) -> Any:
        """The colour of one value of the colour axis."""
        from matplotlib import colormaps

        n = len(self.color_values)
        i = self._index(self.color_values, value)
        if not self.numeric_color:
            return colormaps["tab10"](i) if n <= 10 else colormaps["tab20"](i % 20)
        lo, hi = _CMAP_RANGE
        if n <= DISCRETE_COLORS:  # by rank: evenly spaced colours, the most distinguishable
            return colormaps["viridis"](lo + (hi - lo) * i / max(1, n - 1))
        t = float(self._norm()(float(value)))
        return colormaps["viridis"](lo + (hi - lo) * t)

    def style_of(self, c: ConfigCurves) -> Any:
        return STYLES[0] if self.style is None else self.style_for(c.params.get(self.style))

    def style_for(self, value: Any) -> Any:
        return STYLES[self._index(self.style_values, value)]

    def row_of(self, c: ConfigCurves) -> tuple[str, ...]:
        return tuple(fmt_value(c.params.get(k)) for k in self.rows)

    def row_title(self, c: ConfigCurves) -> str:
        parts = [
            fmt_value(c.params.get(k)) if k in ("activation", "init") else f"{k} = {_v(c, k)}"
            for k in self.rows
        ]
        return " · ".join(parts)

    def split_rows(self, configs: Sequence[ConfigCurves]) -> list[list[ConfigCurves]]:
        """The configurations of each row of panels (first-seen order; one row with no facet)."""
        rows: dict[tuple[str, ...], list[ConfigCurves]] = {}
        for c in configs:
            rows.setdefault(self.row_of(c), []).append(c)
        return list(rows.values())

    def legend_handles(self, linewidth: float = 1.8) -> list[Artist]:
        """Legend entries of a categorical colour axis and of the style axis."""
        from matplotlib.lines import Line2D

        handles: list[Artist] = []
        if self.color is not None and not self.numeric_color:
            for v in self.color_values:
                color = self.color_for(v)
                handles.append(
                    Line2D([], [], color=color, lw=linewidth, label=_entry(self.color, v))
                )
        if self.style is not None:
            for v in self.style_values:
                style = self.style_for(v)
                label = _entry(self.style, v)
                handles.append(Line2D([], [], color="0.25", lw=linewidth, ls=style, label=label))
        return handles

    def colorbar(self, fig: Figure, axes: Any) -> None:
        """A colourbar of the numeric colour axis beside `axes` (none for a categorical one)."""
        if not self.numeric_color or self.color is None:
            return
        from matplotlib import colormaps
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import BoundaryNorm, ListedColormap

        lo, hi = _CMAP_RANGE
        n = len(self.color_values)
        shrink = min(1.0, 0.3 + 0.06 * n)  # two values need no full-height bar
        if n <= DISCRETE_COLORS:
            colors = [colormaps["viridis"](lo + (hi - lo) * i / max(1, n - 1)) for i in range(n)]
            mappable = ScalarMappable(
                norm=BoundaryNorm([i - 0.5 for i in range(n + 1)], n), cmap=ListedColormap(colors)
            )
            bar = fig.colorbar(
                mappable, ax=axes, pad=0.02, aspect=30 * shrink, fraction=0.04, shrink=shrink
            )
            bar.set_ticks(range(n), labels=[fmt_value(v) for v in self.color_values])
        else:
            cmap = ListedColormap(
                colormaps["viridis"]([lo + (hi - lo) * k / 255 for k in range(256)])
            )
            mappable = ScalarMappable(norm=self._norm(), cmap=cmap)
            bar = fig.colorbar(
                mappable, ax=axes, pad=0.02, aspect=30 * shrink, fraction=0.04, shrink=shrink
            )
        bar.ax.tick_params(labelsize=7.5, length=2)
        bar.set_label(axis_label(self.color))


def _v(c: ConfigCurves, key: str) -> str:
    return fmt_value(c.params.get(key))


def _entry(key: str, value: Any) -> str:
    """A legend entry: the value (init, activation, label) or `key = value`, wrapped after a
    parenthesis or comma at 36 characters, 3 lines at most."""
    import re

    text = fmt_value(value)
    text = text if key in ("init", "activation", "label") else f"{key} = {text}"
    lines = [""]
    for token in re.findall(r"[^(,]+[(,]?\s*|[(,]\s*", text):
        if lines[-1] and len(lines[-1]) + len(token.rstrip()) > 36:
            lines.append("")
        lines[-1] += token
    lines = [line.rstrip() if len(line.rstrip()) <= 48 else line[:47] + "…" for line in lines]
    return "\n".join(lines[:3]) + (" …" if len(lines) > 3 else "")


def encode(
    configs: Sequence[ConfigCurves],
    *,
    exclude: Iterable[str] = (),
    color: str | None = None,
    style: str | None = None,
) -> Encoding:
    """The encoding of the varying axes of `configs` (see the module docstring); `color` and
    `style` choose those axes (UserError for an axis that does not vary), `exclude` (the x axis
    of a summary) takes none."""
    skip = set(exclude)
    axes = [k for k in varying(configs) if k not in skip]
    for option, chosen in (("color", color), ("style", style)):
        if chosen is not None and chosen not in axes:
            raise UserError(
                f"--{option} {chosen}: expected an axis that varies among the plotted "
                f"configurations: {', '.join(axes) or 'none varies'}"
            )
    if color is not None and color == style:
        raise UserError(f"--color and --style: expected two different axes. Received: {color}")
    free = [k for k in axes if k not in (color, style) and k != "label"]
    values = {k: _values(configs, k) for k in axes}
    if color is None or style is None:
        color, style = _best_pair(configs, free, values, color, style)
        free = [k for k in free if k not in (color, style)]
    if style is not None and len(values[style]) > len(STYLES):
        raise UserError(
            f"--style {style}: {len(values[style])} values; line styles tell at most "
            f"{len(STYLES)} apart (use --color, or narrow with --where)"
        )
    rows = sorted(free, key=lambda k: k != "activation")
    encoding = Encoding(
        color=color,
        style=style,
        rows=tuple(rows),
        color_values=tuple(values[color]) if color else (),
        style_values=tuple(values[style]) if style else (),
    )
    if "label" in axes and _collide(configs, encoding):
        encoding = Encoding(
            color, style, (*rows, "label"), encoding.color_values, encoding.style_values
        )
    return encoding


def _best_pair(
    configs: Sequence[ConfigCurves],
    free: list[str],
    values: Mapping[str, list[Any]],
    color: str | None,
    style: str | None,
) -> tuple[str | None, str | None]:
    """The colour and style axes (those not chosen) that leave the fewest rows of panels; then
    a colour and a style over none, a numeric colour, the colour with the most values, the
    style with the fewest. Activation stays a row: its scales differ by orders of magnitude."""

    def numeric(key: str | None) -> bool:
        return key is not None and all(is_numeric(v) for v in values[key])

    colors = [color] if color else [*(k for k in free if k != "activation"), None]
    best: tuple[tuple[Any, ...], str | None, str | None] | None = None
    for col in colors:
        styles = (
            [style]
            if style
            else [
                *(
                    k
                    for k in free
                    if k not in (col, "activation") and len(values[k]) <= len(STYLES)
                ),
                None,
            ]
        )
        for sty in styles:
            rest = [k for k in free if k not in (col, sty)]
            n_rows = len({tuple(repr(c.params.get(k)) for k in rest) for c in configs})
            score = (
                n_rows,
                col is None,
                sty is None,
                not numeric(col),
                -len(values[col]) if col else 0,
                len(values[sty]) if sty else 0,
            )
            if best is None or score < best[0]:
                best = (score, col, sty)
    assert best is not None
    return best[1], best[2]


def _collide(configs: Sequence[ConfigCurves], e: Encoding) -> bool:
    cells = {
        (e.row_of(c), repr(c.params.get(e.color or "")), repr(c.params.get(e.style or "")))
        for c in configs
    }
    return len(cells) < len(configs)
