"""Theory overlay and check: a numpy Monte Carlo passes, a deliberately wrong prediction fails.

Records are made here (numpy trials, or by hand), in the shape of `scheduler.analysis.records.record_row`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from scheduler.analysis.compare import (
    UNEXPLAINED,
    check,
    family_bound,
    with_theory,
)
from scheduler.analysis.records import config_params
from scheduler.analysis.theory import ConfigTheory, LayerTheory, predict
from scheduler.query import render_check
from worker.contract import ACTIVATIONS, INIT_SCHEMES, Scheme, SimConfig

pytestmark = pytest.mark.unit


def scheme(registry: dict[str, dict[str, Any]], name: str, **params: Any) -> Scheme:
    merged = {**registry[name], **{k: float(v) for k, v in params.items()}}
    return Scheme(name, tuple(sorted(merged.items())))


def he_gaussian() -> Scheme:
    return Scheme(
        "variance_scaling",
        (("distribution", "untruncated_normal"), ("mode", "fan_in"), ("scale", 2.0)),
    )


def make_config(activation: str, depth: int, width: int, init: Scheme | None = None) -> SimConfig:
    return SimConfig(
        init=init or he_gaussian(),
        activation=scheme(ACTIVATIONS, activation),
        depth=depth,
        width=width,
        input_dim=width,
    )


def stat(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


def monte_carlo(config: SimConfig, trials: int, seed: int = 0) -> list[dict[str, Any]]:
    """Records of preactivations and activations of `config` (relu, Gaussian weights) in numpy."""
    rng = np.random.default_rng(seed)
    n = config.width
    std = math.sqrt(2.0 / n)
    h = rng.standard_normal((trials, 1, n))
    head = {"sweep_id": 1, "config_hash": config.config_hash, **config_params(config)}
    records = []
    for layer in range(1, config.depth + 1):
        z = h @ (rng.standard_normal((trials, n, n)) * std)
        h = np.maximum(z, 0.0)
        for quantity, x in (("preactivation", z), ("activation", h)):
            flat = x.reshape(trials, -1)
            mean, mean_se = stat(flat.mean(axis=1))
            sd, sd_se = stat(flat.std(axis=1))
            msq, msq_se = stat((flat**2).mean(axis=1))
            records.append(
                {
                    **head,
                    "layer": layer,
                    "quantity": quantity,
                    "n_trials": trials,
                    "n_finite": trials,
                    "n_first_nonfinite": 0,
                    "n_collapsed": int(np.sum(np.all(flat == 0.0, axis=1))),
                    "mean": mean,
                    "mean_se": mean_se,
                    "std": sd,
                    "std_se": sd_se,
                    "mean_sq": msq,
                    "mean_sq_se": msq_se,
                    "pooled_std": math.sqrt(max(msq - mean**2, 0.0)),
                }
            )
    return records


def record(config: SimConfig, layer: int, quantity: str, **stats: Any) -> dict[str, Any]:
    """A hand-made record: 1000 finite trials unless said otherwise."""
    base = {
        "sweep_id": 1,
        "config_hash": config.config_hash,
        **config_params(config),
        "layer": layer,
        "quantity": quantity,
        "n_trials": 1000,
        "n_finite": 1000,
        "n_first_nonfinite": 0,
        "n_collapsed": 0,
        "mean": 0.0,
        "mean_se": 0.01,
        "std": 1.0,
        "std_se": 0.01,
        "mean_sq": 1.0,
        "mean_sq_se": 0.01,
        "pooled_std": 1.0,
    }
    return {**base, **stats}


def scaled(factor: float) -> Any:
    """A predictor whose E[mean_sq] of every layer >= 1 is `factor` times the truth."""

    def predictor(config: SimConfig) -> ConfigTheory:
        true = predict(config)
        layers = tuple(
            dataclasses.replace(
                t,
                mean_sq=t.mean_sq * factor,
                mean_sq_bounds=None
                if t.mean_sq_bounds is None
                else (t.mean_sq_bounds[0] * factor, t.mean_sq_bounds[1] * factor),
            )
            if t.layer >= 1 and t.mean_sq is not None
            else t
            for t in true.layers
        )
        return dataclasses.replace(true, layers=layers)

    return predictor


RELU = make_config("relu", depth=4, width=32)


@pytest.fixture(scope="module")
def relu_records() -> list[dict[str, Any]]:
    return monte_carlo(RELU, trials=4000)


def test_monte_carlo_agrees_with_theory(relu_records: list[dict[str, Any]]) -> None:
    rows = with_theory(relu_records, {RELU.config_hash: RELU})
    assert all(r["theory_mean_sq"] is not None and r["z_mean_sq"] is not None for r in rows)
    # relu with centred i.i.d. weights: E[mean_sq] exact at any width
    assert all(r["theory_exact"] for r in rows)
    report = check(rows)
    assert report.ok, report.text()
    # mean, mean_sq and std of every record, and the overflow and collapse laws at each layer
    assert report.n_compared == 3 * len(rows) + 2 * RELU.depth
    # He weights: q^1 = fan_in (2/fan_in) E[x^2] = 2, and q^l = 2 E[relu(z)^2] = q^{l-1}
    pre = [r for r in rows if r["quantity"] == "preactivation"]
    assert all(r["theory_mean_sq"] == pytest.approx(2.0) for r in pre)


def test_wrong_prediction_is_flagged_unexplained(relu_records: list[dict[str, Any]]) -> None:
    rows = with_theory(relu_records, {RELU.config_hash: RELU}, predictor=scaled(1.25))
    report = check(rows)
    assert not report.ok
    flagged = {(d.layer, d.quantity) for d in report.deviations if d.statistic == "mean_sq"}
    assert flagged == {(layer, q) for layer in range(1, 5) for q in ("preactivation", "activation")}
    assert all(d.explanation == UNEXPLAINED for d in report.unexplained)
    assert all(d.z < -4.0 and d.predicted > d.observed for d in report.deviations)
    text = report.text()
    assert "unexplained" in text and "FAILED" in text


def test_predictor_called_once_per_configuration(relu_records: list[dict[str, Any]]) -> None:
    calls: list[str] = []

    def counting(config: SimConfig) -> ConfigTheory:
        calls.append(config.config_hash)
        return predict(config)

    with_theory(relu_records, {RELU.config_hash: RELU}, predictor=counting)
    assert calls == [RELU.config_hash]


def test_unknown_configuration_has_no_theory() -> None:
    rows = with_theory([record(RELU, 1, "activation")], {})
    assert rows[0]["theory_mean_sq"] is None and rows[0]["z_mean_sq"] is None
    assert check(rows).ok and check(rows).n_compared == 0


def test_finite_width_excuses_tanh_within_its_bound_and_never_relu_mean_sq() -> None:
    tanh = make_config("tanh", depth=40, width=32)  # depth/width = 1.25
    relu = make_config("relu", depth=40, width=32)
    configs = {c.config_hash: c for c in (tanh, relu)}
    t = predict(tanh).get(20, "activation")
    assert t.mean_sq is not None and t.mean_sq_bounds is not None
    lo, hi = t.mean_sq_bounds
    assert lo < t.mean_sq <= hi or lo <= t.mean_sq < hi
    far = hi if hi > t.mean_sq else lo  # the side the known correction points to
    se = abs(far - t.mean_sq) / 100.0
    inside = record(tanh, 20, "activation", mean=t.mean, mean_sq=far, mean_sq_se=se)
    outside = record(
        tanh,
        20,
        "activation",
        mean=t.mean,
        mean_sq=far + 20 * se * (1 if far > t.mean_sq else -1),
        mean_sq_se=se,
    )
    (excused,) = _mean_sq_deviations(check(with_theory([inside], configs)))
    assert excused.explanation.startswith("known finite-width effect (within 3x")
    assert "depth/width=1.25" in excused.explanation and "Hanin & Nica 2019" in excused.explanation
    (flagged,) = _mean_sq_deviations(check(with_theory([outside], configs)))
    assert flagged.explanation == UNEXPLAINED
    r = predict(relu).get(20, "activation")
    assert r.mean_sq is not None and r.mean_sq_bounds == (r.mean_sq, r.mean_sq)  # exact
    off = record(relu, 20, "activation", mean=r.mean, mean_sq=r.mean_sq * 1.2, mean_sq_se=0.001)
    report = check(with_theory([off], configs))
    assert [d.explanation for d in _mean_sq_deviations(report)] == [UNEXPLAINED]
    assert not report.ok


def _mean_sq_deviations(report: Any) -> list[Any]:
    return [d for d in report.deviations if d.statistic == "mean_sq"]


def test_relu_mean_below_prediction_is_finite_width_above_is_not() -> None:
    relu = make_config("relu", depth=8, width=32)
    t = predict(relu).get(6, "activation")
    assert t.mean is not None and t.mean_sq is not None and t.mean_bounds is not None
    # E[sqrt q] = sqrt(E q) e^{-sigma^2/8} < sqrt(E q): the interval lies below the prediction
    assert t.mean_bounds[0] < 0.8 * t.mean and t.mean_bounds[1] < 1.2 * t.mean
    common = {"mean_sq": t.mean_sq, "mean_sq_se": t.mean_sq}  # mean_sq itself not in question
    below = record(relu, 6, "activation", mean=t.mean * 0.8, mean_se=t.mean * 0.01, **common)
    above = record(relu, 6, "activation", mean=t.mean * 1.2, mean_se=t.mean * 0.01, **common)
    for rec, expected_ok in ((below, True), (above, False)):
        report = check(with_theory([rec], {relu.config_hash: relu}))
        (deviation,) = [d for d in report.deviations if d.statistic == "mean"]
        assert deviation.explained is expected_ok


def test_no_finite_width_note_when_shallow() -> None:
    tanh = make_config("tanh", depth=2, width=512)
    t = predict(tanh).get(2, "activation")
    assert t.mean_sq is not None
    rec = record(tanh, 2, "activation", mean_sq=t.mean_sq * 1.1, mean_sq_se=1e-4)
    report = check(with_theory([rec], {tanh.config_hash: tanh}))
    assert [d.explanation for d in _mean_sq_deviations(report)] == [UNEXPLAINED]


def test_too_few_finite_trials_are_skipped_and_counted() -> None:
    linear = make_config("linear", depth=3, width=16, init=scheme(INIT_SCHEMES, "normal", std=1))
    rec = record(linear, 2, "preactivation", mean_sq=1.0, mean_sq_se=0.5, n_finite=1)
    report = check(with_theory([rec], {linear.config_hash: linear}, predictor=scaled(1e6)))
    assert report.ok and report.n_censored == 1 and report.deviations == ()


@pytest.mark.parametrize(
    ("counts", "ratio", "excused"),
    [
        ({"n_finite": 700, "n_first_nonfinite": 300}, 0.9, True),  # overflow took the top 30%
        ({"n_finite": 700, "n_first_nonfinite": 300}, 1.6, False),  # above 1 / (1 - 0.3)
        ({"n_finite": 700, "n_first_nonfinite": 300}, 1e-6, False),  # far below the truncation
        ({"n_collapsed": 12}, 0.5, True),  # collapse to 0 only lowers the average
        ({"n_collapsed": 12}, 2.0, False),
    ],
)
def test_censoring_excuses_only_what_it_censors(
    counts: dict[str, int], ratio: float, excused: bool
) -> None:
    linear = make_config("linear", depth=3, width=16, init=scheme(INIT_SCHEMES, "normal", std=1))
    t = predict(linear).get(2, "preactivation")
    assert t.mean_sq is not None and t.std is not None
    rec = record(
        linear,
        2,
        "preactivation",
        mean_sq=t.mean_sq * ratio,
        mean_sq_se=t.mean_sq * 1e-3,
        std=t.std,
        std_se=t.std,
        **counts,
    )
    report = check(with_theory([rec], {linear.config_hash: linear}))
    (deviation,) = [d for d in report.deviations if d.statistic == "mean_sq"]
    assert deviation.explanation.startswith("overflow/collapse censoring") is excused
    assert report.n_censored == 0 and report.n_compared >= 2


def test_relu_layer_of_exact_zeros_is_a_sample_not_censoring() -> None:
    relu = make_config("relu", depth=2, width=8)
    mean = predict(relu).get(1, "activation").mean
    rec = record(relu, 1, "activation", n_collapsed=3, mean=mean, mean_sq=5.0, mean_sq_se=0.01)
    report = check(with_theory([rec], {relu.config_hash: relu}))
    assert report.n_censored == 0
    assert [d.explanation for d in _mean_sq_deviations(report)] == [UNEXPLAINED]


def test_render_lists_every_deviation() -> None:
    tanh = make_config("tanh", depth=2, width=512)
    layers = tuple(
        LayerTheory(t.layer, t.quantity, 0.0, 2.0, math.sqrt(2.0)) for t in predict(tanh).layers
    )

    def wrong(config: SimConfig) -> ConfigTheory:
        return dataclasses.replace(predict(config), layers=layers)

    records = [record(tanh, layer, "activation") for layer in (1, 2)]
    report = check(with_theory(records, {tanh.config_hash: tanh}, predictor=wrong))
    lines = report.text().splitlines()
    assert len(lines) == 1 + 2 + 1  # header, two deviations, summary
    assert "-100.0" in lines[1] and report.summary() == lines[-1]
    console = Console(record=True, width=200)
    render_check(report, console)
    printed = console.export_text()
    assert "-100.0" in printed and "FAILED" in printed


@pytest.mark.parametrize(("z", "chance"), [(4.5, True), (9.0, False)])
def test_one_moderate_z_among_thousands_is_chance(z: float, chance: bool) -> None:
    linear = make_config("linear", depth=1, width=512, init=scheme(INIT_SCHEMES, "normal", std=1))
    t = predict(linear).get(1, "preactivation")
    assert t.mean_sq is not None
    good = record(
        linear, 1, "preactivation", mean_sq=t.mean_sq, mean_sq_se=1.0, std=t.std, std_se=1.0
    )
    bad = {**good, "mean_sq": t.mean_sq + z}
    report = check(with_theory([good] * 1500 + [bad], {linear.config_hash: linear}))
    assert report.n_compared == 5 * 1501  # 3 statistics and 2 layer laws per record
    assert 4.5 < family_bound(report.n_compared, 1000) < 9.0
    (deviation,) = report.deviations
    assert deviation.explanation.startswith("within chance") is chance
    assert report.ok is chance


def test_symmetric_means_are_never_finite_width() -> None:
    tanh = make_config("tanh", depth=40, width=32)
    t = predict(tanh).get(10, "activation")
    rec = record(tanh, 10, "activation", mean=0.5, mean_se=0.01, mean_sq=t.mean_sq, std=t.std)
    report = check(with_theory([rec], {tanh.config_hash: tanh}))
    assert [(d.statistic, d.explanation) for d in report.deviations] == [("mean", UNEXPLAINED)]


def _pair_records(c0: float, trials: int = 200, depth: int = 4, width: int = 256) -> list[Any]:
    """Records of a relu network (He Gaussian weights) pushing two inputs of correlation c0,
    its per-layer corr and cross simulated in numpy (preactivations and activations)."""
    rng = np.random.default_rng(11)
    config = dataclasses.replace(
        make_config("relu", depth, width), batch=2, input_q=1.0, input_corr=c0
    )
    frame, _ = np.linalg.qr(rng.standard_normal((width, 2)))
    u, v = frame[:, 0], frame[:, 1]
    x = math.sqrt(width) * np.stack([u, c0 * u + math.sqrt(1.0 - c0 * c0) * v])
    corr: dict[tuple[int, str], list[float]] = {}
    cross: dict[tuple[int, str], list[float]] = {}
    for _ in range(trials):
        h = x
        for layer in range(1, depth + 1):
            z = h @ rng.standard_normal((width, width)) * math.sqrt(2.0 / width)
            h = np.maximum(z, 0.0)
            for quantity, values in (("preactivation", z), ("activation", h)):
                a, b = values
                corr.setdefault((layer, quantity), []).append(
                    float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
                )
                cross.setdefault((layer, quantity), []).append(float(a @ b / width))
    rows = []
    for key in corr:
        c_mean, c_se = stat(np.array(corr[key]))
        q_mean, q_se = stat(np.array(cross[key]))
        rows.append(
            record(
                config,
                *key,
                n_trials=trials,
                n_finite=trials,
                corr=c_mean,
                corr_se=c_se,
                cross=q_mean,
                cross_se=q_se,
            )
        )
    return rows


def test_correlations_agree_with_the_map_and_wrong_ones_fail() -> None:
    rows = _pair_records(0.5)
    key = rows[0]["config_hash"]
    scored = with_theory(rows, {key: _pair_config(0.5)})
    zs = [abs(r["z_corr"]) for r in scored]
    assert len(zs) == 8 and max(zs) < 4.0, zs
    assert all(r["theory_xi_c"] is not None for r in scored)
    report = check(scored)
    assert not [d for d in report.deviations if d.statistic in ("corr", "cross")], report.text()
    # the same numbers judged as if the inputs had had c0 = 0.3: corr is far off the map
    failed = check(with_theory(rows, {key: _pair_config(0.3)}))
    assert not failed.ok
    assert any(d.statistic == "corr" and d.explanation == UNEXPLAINED for d in failed.deviations)


def _pair_config(c0: float) -> SimConfig:
    return dataclasses.replace(make_config("relu", 4, 256), batch=2, input_q=1.0, input_corr=c0)
