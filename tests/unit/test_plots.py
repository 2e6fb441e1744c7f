"""Figures of hand-built records (no TensorFlow, no database): what each kind draws, its options,
its encodings, and the files `save_figure` writes (really PNG, PDF, SVG)."""

from __future__ import annotations

import itertools
import math
import struct
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from scheduler.analysis import plots
from scheduler.analysis.compare import with_theory
from scheduler.analysis.figures import FIGURE_FORMATS, STATS, STYLES, save_figure
from scheduler.analysis.records import ConfigResults, Record, result_rows
from scheduler.errors import UserError
from tests.db.builders import sim_config
from worker.contract import INIT_SCHEMES, QUANTITIES, LayerRecord, SimConfig, canonical_scheme
from worker.stats import Moments

pytestmark = pytest.mark.unit

Scale = Callable[[int, str], float]  # (layer, quantity) -> the typical std of a unit


def _layer_records(
    config: SimConfig,
    scale: Scale,
    *,
    trials: int = 20,
    seed: int = 0,
    bad_from: int | None = None,
    mean: float = 0.0,
) -> tuple[LayerRecord, ...]:
    """Per-trial std ~ scale * (1 + 5% noise), mean ~ `mean` + noise; from layer `bad_from` on,
    a quarter of the trials non-finite (censored) and one collapsed."""
    rng = np.random.default_rng(seed)
    out = []
    for layer in range(config.depth + 1):
        for q in ("activation",) if layer == 0 else QUANTITIES:
            s = scale(layer, q)
            std = s * (1.0 + 0.05 * rng.standard_normal(trials))
            mu = mean * s + 0.01 * s * rng.standard_normal(trials)
            bad = bad_from is not None and layer >= bad_from
            n_finite = trials - trials // 4 if bad else trials
            out.append(
                LayerRecord(
                    layer=layer,
                    quantity=q,
                    n_trials=trials,
                    n_finite=n_finite,
                    n_first_nonfinite=trials // 4 if bad and layer == bad_from else 0,
                    n_collapsed=1 if bad else 0,
                    mean=Moments.of(mu[:n_finite]),
                    std=Moments.of(std[:n_finite]),
                    mean_sq=Moments.of((std**2 + mu**2)[:n_finite]),
                )
            )
    return tuple(out)


def _sigma_config(sigma_w: float, **kw: Any) -> SimConfig:
    config = sim_config(**kw)
    init = canonical_scheme(
        INIT_SCHEMES,
        "variance_scaling",
        {"scale": sigma_w**2, "mode": "fan_in", "distribution": "untruncated_normal"},
    )
    return SimConfig(**{**config.__dict__, "init": init})


def _records(
    items: Sequence[tuple[SimConfig, dict[str, Any]]],
    scale: Callable[[SimConfig], Scale] | None = None,
    **kw: Any,
) -> list[Record]:
    """Records of `items` (configuration, axis values) with the theory columns."""
    scale = scale or (lambda c: lambda layer, q: 0.9**layer)
    configs = [
        ConfigResults(c.config_hash, c, axes, _layer_records(c, scale(c), seed=i, **kw))
        for i, (c, axes) in enumerate(items)
    ]
    return with_theory(result_rows(1, configs))


def _grid(**axes: Sequence[Any]) -> list[tuple[SimConfig, dict[str, Any]]]:
    """Configurations of every combination of `axes` (sim_config keywords) with their values."""
    combos = [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]
    return [(sim_config(**combo), combo) for combo in combos]


def _lines(fig: Figure, prefix: str) -> list[tuple[Axes, Line2D]]:
    return [
        (ax, line)
        for ax in fig.axes
        for line in ax.get_lines()
        if (line.get_gid() or "").startswith(prefix)
    ]


def _record(records: list[Record], config_hash: str, layer: int, quantity: str) -> Record:
    (found,) = [
        r
        for r in records
        if r["config_hash"] == config_hash and r["layer"] == layer and r["quantity"] == quantity
    ]
    return found


# ----------------------------------------------------------------------------- files


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


@pytest.mark.parametrize("name", ["fig.png", "fig.pdf", "fig.svg", "FIG.PDF", "a.b.Svg"])
def test_save_figure_writes_the_format_of_the_extension(tmp_path: Path, name: str) -> None:
    fig = plots.layers_figure(_records(_grid(width=[8, 16])))
    out = save_figure(fig, tmp_path / name)
    data = out.read_bytes()
    fmt = FIGURE_FORMATS[out.suffix.lower()]
    if fmt == "png":
        width, height = _png_size(data)
        w_in, h_in = fig.get_size_inches()
        assert (width, height) == (round(w_in * 200), round(h_in * 200))  # 200 dpi
    elif fmt == "pdf":
        assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
        assert b"/FontFile2" in data  # TrueType fonts embedded (Type 42), not Type 3
    else:
        root = ET.fromstring(data)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        ids = {el.get("id") for el in root.iter()}
        assert any(i and i.startswith("mc:") for i in ids)  # the curves are named


@pytest.mark.parametrize("name", ["fig.pdf", "fig.svg"])
def test_vector_files_are_reproducible(tmp_path: Path, name: str) -> None:
    records = _records(_grid(width=[8, 16]))
    a = save_figure(plots.layers_figure(records), tmp_path / f"a-{name}").read_bytes()
    b = save_figure(plots.layers_figure(records), tmp_path / f"b-{name}").read_bytes()
    assert a == b


@pytest.mark.parametrize("name", ["fig.jpg", "fig", "fig.png.bak", "fig.eps"])
def test_an_unknown_extension_is_one_user_error_and_writes_nothing(
    tmp_path: Path, name: str
) -> None:
    records = _records(_grid(width=[8, 16]))
    with pytest.raises(UserError) as info:
        plots.plot("layers", records, tmp_path / name)
    message = str(info.value)
    assert name in message and ".png, .pdf, .svg" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_plot_and_plot_png_keep_working(tmp_path: Path) -> None:
    records = _records(_grid(width=[8, 16]))
    for kind in ("layers", "explosion", "summary"):
        assert plots.plot(kind, records, tmp_path / f"{kind}.png") == tmp_path / f"{kind}.png"
        width, height = _png_size(plots.plot_png(kind, records))
        assert width > 300 and height > 200


# ----------------------------------------------------------------------------- layers


def test_layers_shows_every_configuration_depths_included() -> None:
    # He vs Glorot at depths 10 and 50: gradient profiles depend on the depth, so all four show
    items = _grid(init=["he_normal", "glorot_normal"], depth=[10, 50])
    depth_scale = {10: 1.1, 50: 0.9}
    records = _records(items, lambda c: lambda layer, q: depth_scale[c.depth] ** layer)
    fig = plots.layers_figure(records)
    mc = _lines(fig, "mc:gradient:")
    assert len(mc) == 4
    by_hash = {line.get_gid().split(":")[2]: line for _, line in mc}
    for config, _ in items:
        line = by_hash[config.config_hash]
        assert list(line.get_xdata()) == list(range(1, config.depth + 1))
        want = [
            _record(records, config.config_hash, lay, "gradient")["std"]
            for lay in range(1, config.depth + 1)
        ]
        assert list(line.get_ydata()) == pytest.approx(want, rel=1e-12)
    assert len(_lines(fig, "mc:activation:")) == 4


@pytest.mark.parametrize("stat", STATS)
def test_the_stat_option_draws_that_column_and_its_theory(stat: str) -> None:
    items = _grid(activation=["linear"], width=[16, 32])
    records = _records(items, lambda c: lambda layer, q: 1.0, mean=0.3)
    fig = plots.layers_figure(records, stat=stat, quantity="activation")
    (ax,) = [a for a in fig.axes if a.get_lines()]
    assert ax.get_ylabel().count(r"\mathrm{mean}" if stat != "std" else r"\mathrm{std}") == 1
    for config, _ in items:
        (line,) = [line for _, line in _lines(fig, f"mc:activation:{config.config_hash}")]
        want = [
            _record(records, config.config_hash, lay, "activation")[stat]
            for lay in line.get_xdata()
        ]
        assert list(line.get_ydata()) == pytest.approx(want, rel=1e-12)
        theory = _lines(fig, f"theory:activation:{config.config_hash}")
        col = f"theory_{stat}"
        predicted = [
            _record(records, config.config_hash, lay, "activation")[col] for lay in range(4)
        ]
        if all(p is None for p in predicted):  # no prediction of this statistic: no line
            assert theory == []
        else:
            (tl,) = [line for _, line in theory]
            assert list(tl.get_ydata()) == pytest.approx([float(p) for p in predicted], rel=1e-12)


def test_mean_sq_of_a_linear_network_follows_its_exact_theory() -> None:
    # linear, He (variance 2/fan_in): q^l = 2^l exactly; the synthetic values follow it
    items = _grid(init=["he_normal"], activation=["linear"], depth=[6])
    records = _records(
        items, lambda c: lambda layer, q: math.sqrt(2.0) ** layer if q != "gradient" else 1.0
    )
    fig = plots.layers_figure(records, stat="mean_sq", quantity="preactivation")
    ((_, tl),) = _lines(fig, "theory:")
    assert list(tl.get_ydata()) == pytest.approx([2.0**layer for layer in range(1, 7)], rel=1e-9)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"  # 2 .. 64 spans more than a decade
    assert "z^{l}" in ax.get_ylabel()


def test_one_legend_for_the_whole_figure() -> None:
    items = _grid(activation=["relu", "tanh"], init=["he_normal", "glorot_normal"])
    fig = plots.layers_figure(_records(items))
    assert len(fig.legends) == 1
    assert all(ax.get_legend() is None for ax in fig.axes)
    assert len([a for a in fig.axes if a.get_lines()]) == 4  # 2 rows (activation) x 2 quantities
    titles = [a.get_title() for a in fig.axes if a.get_lines()]
    assert sum(t.startswith("relu") for t in titles) == 2
    assert sum(t.startswith("tanh") for t in titles) == 2


def _luminance(color: Any) -> float:
    r, g, b = to_rgb(color)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_a_numeric_axis_is_coloured_in_order_with_a_colourbar() -> None:
    widths = [4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]  # 12 lines
    items = _grid(width=widths)
    fig = plots.layers_figure(_records(items), quantity="activation")
    lines = {line.get_gid().split(":")[2]: line for _, line in _lines(fig, "mc:")}
    colors = [lines[c.config_hash].get_color() for c, _ in items]
    # viridis: luminance rises with the value, every two neighbours clearly apart
    lum = [_luminance(c) for c in colors]
    assert all(b - a > 0.02 for a, b in itertools.pairwise(lum))
    assert (
        min(
            np.linalg.norm(np.subtract(to_rgb(a), to_rgb(b))) for a, b in itertools.pairwise(colors)
        )
        > 0.05
    )
    (bar,) = [a for a in fig.axes if "width" in a.get_ylabel()]
    labels = [t.get_text() for t in bar.get_yticklabels()]
    assert labels == [str(w) for w in widths]
    assert len(fig.legends) == 1 and not any(
        "width =" in t.get_text() for t in fig.legends[0].texts
    )


def test_more_values_than_discrete_colours_get_a_continuous_colourbar() -> None:
    items = [(_sigma_config(s), {"sigma_w": s}) for s in np.linspace(0.5, 3.0, 20)]
    fig = plots.layers_figure(_records(items), quantity="activation")
    (bar,) = [a for a in fig.axes if r"\sigma_w" in a.get_ylabel()]
    assert 3 <= len(bar.get_yticks()) < 20
    lines = {line.get_gid().split(":")[2]: line for _, line in _lines(fig, "mc:")}
    lum = [_luminance(lines[c.config_hash].get_color()) for c, _ in items]
    assert lum == sorted(lum)


def test_init_takes_colour_and_dtype_line_style_never_one_cycle() -> None:
    items = _grid(init=["he_normal", "glorot_normal", "lecun_normal"], dtype=["float32", "float16"])
    fig = plots.layers_figure(_records(items), quantity="activation")
    lines = {line.get_gid().split(":")[2]: line for _, line in _lines(fig, "mc:")}
    color_of = {}
    style_of = {}
    for config, axes in items:
        line = lines[config.config_hash]
        color_of.setdefault(axes["init"], set()).add(to_rgb(line.get_color()))
        style_of.setdefault(axes["dtype"], set()).add(str(line.get_linestyle()))
    assert all(len(v) == 1 for v in color_of.values())  # one colour per init, whatever the dtype
    assert len(set.union(*color_of.values())) == 3
    assert all(len(v) == 1 for v in style_of.values())  # one style per dtype, whatever the init
    assert len(set.union(*style_of.values())) == 2
    legend = [t.get_text() for t in fig.legends[0].texts]
    assert {
        "he_normal",
        "glorot_normal",
        "lecun_normal",
        "dtype = float32",
        "dtype = float16",
    } <= set(legend)


def test_color_and_style_can_be_chosen() -> None:
    items = _grid(init=["he_normal", "glorot_normal"], width=[8, 16, 32])
    fig = plots.layers_figure(_records(items), quantity="activation", color="init", style="width")
    lines = {line.get_gid().split(":")[2]: line for _, line in _lines(fig, "mc:")}
    styles = {axes["width"]: str(lines[c.config_hash].get_linestyle()) for c, axes in items}
    assert len(set(styles.values())) == 3
    with pytest.raises(UserError, match="--color dtype: expected an axis that varies"):
        plots.layers_figure(_records(items), color="dtype")
    with pytest.raises(UserError, match="two different axes"):
        plots.layers_figure(_records(items), color="init", style="init")
    many = _grid(width=[8, 16, 32, 64, 128])
    with pytest.raises(UserError, match=f"line styles tell at most {len(STYLES)} apart"):
        plots.layers_figure(_records(many), style="width")


def test_extra_axes_split_rows_until_too_many() -> None:
    items = _grid(
        activation=["relu", "tanh"],
        init=["he_normal", "glorot_normal"],
        width=[8, 16],
        dtype=["float32", "float64"],
    )
    fig = plots.layers_figure(_records(items), quantity="activation")
    panels = [a for a in fig.axes if a.get_lines()]
    assert (
        len(panels) == 2 * 2
    )  # width colours, init or dtype styles, the other and activation rows
    assert len(_lines(fig, "mc:")) == 16
    wide = _grid(
        activation=["relu", "tanh", "linear"],
        init=["he_normal", "glorot_normal", "lecun_normal", "he_uniform", "glorot_uniform"],
        width=[8, 16],
        batch=[1, 2, 3, 4, 5],
    )
    with pytest.raises(UserError, match=r"rows of panels .* at most 12: narrow with --where"):
        plots.layers_figure(_records(wide))


def test_censored_layers_are_faded_and_have_no_band() -> None:
    items = _grid(width=[8, 16])
    records = _records(items, bad_from=2)
    fig = plots.layers_figure(records, quantity="activation")
    for _, line in _lines(fig, "mc:"):
        y = np.asarray(line.get_ydata(), dtype=float)
        assert np.isfinite(y[:2]).all() and np.isnan(y[2:]).all()  # clean up to layer 1
    assert len(_lines(fig, "censored:")) == 2
    assert any("censored" in t.get_text() for t in fig.legends[0].texts)


def test_extremes_draw_without_error() -> None:
    # a 1-layer network (markers), collapsed std 0 on a log axis, huge float64 values,
    # a layer with no finite trial, and a negative mean on a linear axis
    one = _records(_grid(depth=[1], width=[8, 16]))
    fig = plots.layers_figure(one)
    assert all(line.get_marker() == "o" for _, line in _lines(fig, "mc:"))
    huge = _records(_grid(width=[8, 16], dtype=["float64"]), lambda c: lambda layer, q: 1e25**layer)
    fig = plots.layers_figure(huge, quantity="activation")
    assert fig.axes[0].get_yscale() == "log"
    neg = _records(_grid(width=[8, 16]), lambda c: lambda layer, q: 1.0, mean=-2.0)
    fig = plots.layers_figure(neg, stat="mean", quantity="activation")
    assert fig.axes[0].get_yscale() == "linear"
    dead = [
        Record({**r, "n_finite": 0, "std": None, "mean": None, "mean_sq": None}, r.config)
        if r["quantity"] == "gradient"
        else r
        for r in _records(_grid(width=[8, 16]))
    ]
    fig = plots.layers_figure(dead)  # the gradient column says there is nothing to draw
    assert _lines(fig, "mc:gradient") == []
    assert any("no finite std" in t.get_text() for a in fig.axes for t in a.texts)
    with pytest.raises(UserError, match="--quantity gradient: no finite std"):
        plots.layers_figure(dead, quantity="gradient")


def test_bad_options_are_user_errors() -> None:
    records = _records(_grid(width=[8, 16]))
    with pytest.raises(
        UserError, match=r"--stat: expected one of std, mean_sq, mean\. Received: 'var'"
    ):
        plots.layers_figure(records, stat="var")
    with pytest.raises(UserError, match="--quantity: expected one of"):
        plots.layers_figure(records, quantity="weights")
    with pytest.raises(UserError, match="--x: not an option of --kind layers"):
        plots.figure("layers", records, x="width")
    with pytest.raises(
        UserError, match="--kind: expected one of layers, summary, explosion, phase"
    ):
        plots.figure("bands", records)
    with pytest.raises(UserError, match="no records to plot"):
        plots.layers_figure([])


def test_the_cli_lists_what_the_figures_take() -> None:
    from scheduler.cli.analysis import FIGURE_SUFFIXES, PLOT_KINDS, PLOT_STATS

    assert PLOT_KINDS == plots.KINDS
    assert PLOT_STATS == STATS
    assert tuple(FIGURE_FORMATS) == FIGURE_SUFFIXES


# ---------------------------------------------------------------------------- summary


def test_summary_is_the_last_layer_against_width_with_se_bars_and_theory() -> None:
    widths = [4, 8, 16, 32, 64, 128, 256, 512, 1024]
    items = _grid(width=widths, activation=["relu"], init=["he_normal"], depth=[5])
    records = _records(items, lambda c: lambda layer, q: 1.0 + 1.0 / c.width)
    fig = plots.summary_figure(records)  # x: width, the only numeric axis that varies
    ax = fig.axes[0]
    ((_, line),) = _lines(fig, "mc:activation")
    assert list(line.get_xdata()) == widths
    last = [_record(records, c.config_hash, 5, "activation") for c, _ in items]
    assert list(line.get_ydata()) == pytest.approx([r["mean_sq"] for r in last], rel=1e-12)
    (container,) = ax.containers
    segments = container.lines[2][0].get_segments()
    half = [(s[1][1] - s[0][1]) / 2 for s in segments]
    assert half == pytest.approx([2 * r["mean_sq_se"] for r in last], rel=1e-9)  # ±2 SE
    ((_, theory),) = _lines(fig, "theory:activation")
    assert list(theory.get_ydata()) == pytest.approx([r["theory_mean_sq"] for r in last], rel=1e-12)
    assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(w) for w in widths]
    assert "D = 5" in ax.get_title() and "width" in ax.get_xlabel()


def test_summary_options_layer_quantity_stat_and_series() -> None:
    items = _grid(width=[8, 16, 32], init=["he_normal", "glorot_normal"], depth=[4])
    records = _records(items)
    fig = plots.summary_figure(records, x="width", quantity="gradient", stat="std")
    ax = fig.axes[0]
    assert "layer 1" in ax.get_title()  # gradients: the last layer backprop reaches
    series = _lines(fig, "mc:gradient")
    assert len(series) == 2  # one per init, coloured
    for _, line in series:
        assert len(line.get_xdata()) == 3
    fig = plots.summary_figure(records, x="width", layer=2)
    (_, line), *_ = _lines(fig, "mc:activation")
    he = [c for c, a in items if a["init"] == "he_normal"]
    ys = {round(y, 12) for _, ln in _lines(fig, "mc:activation") for y in ln.get_ydata()}
    assert round(_record(records, he[0].config_hash, 2, "activation")["mean_sq"], 12) in ys


def test_summary_against_depth_and_sigma_w() -> None:
    items = _grid(depth=[2, 4, 8, 16])
    fig = plots.summary_figure(_records(items), x="depth")
    ((_, line),) = _lines(fig, "mc:")
    assert list(line.get_xdata()) == [2, 4, 8, 16]
    assert fig.axes[0].get_xscale() == "linear"  # 2..16: less than the factor 16 for log
    sigmas = [0.5, 1.0, 1.5, 2.0, 3.0]
    items = [(_sigma_config(s, activation="tanh"), {"sigma_w": s}) for s in sigmas]
    fig = plots.summary_figure(_records(items))
    assert r"\sigma_w" in fig.axes[0].get_xlabel()


def test_summary_hides_configurations_without_the_layer_and_says_so() -> None:
    items = _grid(width=[8, 16], depth=[2, 6])
    fig = plots.summary_figure(_records(items), x="width", layer=4)
    ((_, line),) = _lines(fig, "mc:")
    assert len(line.get_xdata()) == 2
    assert "2 configurations shallower" in fig.legends[0].get_title().get_text()
    with pytest.raises(UserError, match="--layer 9: no configuration has that layer"):
        plots.summary_figure(_records(items), x="width", layer=9)


def test_summary_x_errors() -> None:
    records = _records(_grid(width=[8, 16], init=["he_normal", "glorot_normal"]))
    with pytest.raises(
        UserError, match="--x widht: not an axis of these records; did you mean 'width'"
    ):
        plots.summary_figure(records, x="widht")
    with pytest.raises(
        UserError, match="--x depth: one value here \\(3\\); numeric axes that vary: width"
    ):
        plots.summary_figure(records, x="depth")
    with pytest.raises(UserError, match="--x init: values that are not all numbers"):
        plots.summary_figure(records, x="init")
    flat = _records(_grid(init=["he_normal", "glorot_normal"]))
    with pytest.raises(UserError, match="expected a numeric axis that varies"):
        plots.summary_figure(flat)


def test_the_encoding_leaves_the_fewest_rows() -> None:
    # 7 inits x 2 depths x 2 activations: depth is numeric but has 2 values; colouring it would
    # leave 7 inits to split rows (14); init takes the colours, depth the styles: 2 rows
    inits = ["glorot_uniform", "glorot_normal", "he_normal", "he_uniform", "lecun_normal"]
    inits += ["lecun_uniform", "orthogonal"]
    items = _grid(init=inits, activation=["relu", "tanh"], depth=[3, 6])
    fig = plots.layers_figure(_records(items), quantity="gradient")
    assert len([a for a in fig.axes if a.get_lines()]) == 2
    lines = {line.get_gid().split(":")[2]: line for _, line in _lines(fig, "mc:")}
    assert len(lines) == 28
    colors = {a["init"]: to_rgb(lines[c.config_hash].get_color()) for c, a in items}
    assert len(set(colors.values())) == 7
    styles = {a["depth"]: lines[c.config_hash].get_linestyle() for c, a in items}
    assert len(set(styles.values())) == 2
