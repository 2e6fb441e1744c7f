"""Per-trial distributions from the real core: exact merges, quantiles against closed forms, and
the exact finite-width law of log mean_sq (linear and relu, Gaussian weights) within 4 SE."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from scheduler.analysis.records import QUANTILES, distribution_row
from scheduler.analysis.theory import exact_log_mean_sq
from worker.contract import (
    ACTIVATIONS,
    INIT_SCHEMES,
    ChunkTask,
    LayerRecord,
    SimConfig,
    canonical_scheme,
    merge_records,
)
from worker.histogram import BINS_PER_OCTAVE
from worker.sim import simulate_chunk
from worker.sim.observables import N_COLUMNS, QuantityTrials, log_mean_sq

pytestmark = pytest.mark.sim


def sim_config(activation: str = "tanh", init: str = "lecun_normal", **kw: object) -> SimConfig:
    base = SimConfig(
        init=canonical_scheme(INIT_SCHEMES, init, {}),
        activation=canonical_scheme(ACTIVATIONS, activation, {}),
        depth=4,
        width=24,
        input_dim=10,
        batch=2,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def records(config: SimConfig, n: int, start: int = 0, **kw: object) -> list[LayerRecord]:
    task = ChunkTask(config, seed_key=20261202, chunk_index=0, trial_start=start, n_trials=n)
    return list(simulate_chunk(task, **kw).records)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_histograms_are_exact_for_any_sub_batching_and_chunking(dtype: str) -> None:
    config = sim_config(dtype=dtype, width=37, batch=1)
    whole = records(config, 96, sub_batch=96)
    one = records(config, 96, sub_batch=1)
    parts = merge_records([records(config, 40, 0, sub_batch=7), records(config, 56, 40)])
    for a, b, c in zip(whole, one, parts, strict=True):
        assert a.dist is not None and b.dist is not None and c.dist is not None
        for name in ("mean", "std", "mean_sq"):
            assert a.dist.histogram(name) == b.dist.histogram(name) == c.dist.histogram(name)
            assert a.dist.histogram(name).n == a.n_finite
        for x in (b.dist.log_mean_sq, c.dist.log_mean_sq):
            assert x.n == a.dist.log_mean_sq.n
            assert math.isclose(x.mean, a.dist.log_mean_sq.mean, rel_tol=1e-12, abs_tol=1e-12)
            assert math.isclose(x.m2, a.dist.log_mean_sq.m2, rel_tol=1e-10)


def test_log_mean_sq_is_elementwise() -> None:
    """A trial's log and bin do not depend on the array around it (numpy SIMD bodies and tails
    agree), so per-trial values are bit-identical whatever the sub-batch."""
    rng = np.random.default_rng(11)
    obs = np.exp(rng.uniform(-700.0, 700.0, (67, 3, N_COLUMNS)))
    obs[..., 0] *= rng.choice([-1.0, 1.0], (67, 3))
    obs[..., 4] = 2 * rng.integers(-1100, 1100, (67, 3))  # mean_sq's (even) binary exponent
    obs[9, 2, 2] = 0.0
    full_log, full_k = log_mean_sq(QuantityTrials.from_array(1, obs))
    for size in (1, 2, 3, 5, 8, 17, 33):
        for start in range(0, 67 - size, 13):
            log, k = log_mean_sq(QuantityTrials.from_array(1, obs[start : start + size]))
            np.testing.assert_array_equal(log, full_log[start : start + size])
            np.testing.assert_array_equal(k, full_k[start : start + size])


@pytest.mark.parametrize("exp2", [1400, 0, -1800])
def test_mean_sq_beyond_float64_is_binned_from_its_scaled_form(exp2: int) -> None:
    """mean_sq = 0.75 * 2^exp2 (beyond float64 both ways): log and bin from the scaled form."""
    obs = np.array([[[1.0, 1.0, 0.75, 2.0, float(exp2)]]])
    log, k = log_mean_sq(QuantityTrials.from_array(1, obs))
    assert log[0, 0] == pytest.approx(math.log(0.75) + exp2 * math.log(2.0), rel=1e-15)
    assert k[0, 0] == math.floor(BINS_PER_OCTAVE * (exp2 + math.log2(0.75)))
    zero = np.array([[[0.0, 0.0, 0.0, 0.0, 0.0]]])  # a collapsed trial: mean_sq 0
    log, k = log_mean_sq(QuantityTrials.from_array(1, zero))
    assert log[0, 0] == -math.inf and k[0, 0] == 0


@pytest.mark.parametrize(("input_dim", "batch"), [(8, 2), (256, 1)])
def test_histogram_quantiles_within_the_binomial_bound_of_the_exact_ones(
    input_dim: int, batch: int
) -> None:
    """mean_sq of the input (layer 0) is chi^2_m / m, m = batch * input_dim, exactly. The exact
    CDF at the histogram's p-quantile is p up to 4 binomial SE (sqrt(p (1 - p) / N)) plus the
    probability of the bin it lies in (the one thing the histogram does not resolve)."""
    n = 2000
    config = sim_config(depth=1, width=4, input_dim=input_dim, batch=batch)
    (record,) = [r for r in records(config, n) if r.key == (0, "activation")]
    assert record.dist is not None
    m = batch * input_dim
    law = stats.chi2(m, scale=1.0 / m)
    row = distribution_row(record.dist)
    for suffix, p in QUANTILES:
        q = row[f"mean_sq_{suffix}"]
        assert q is not None
        lo, hi = q * 2.0 ** (-1.0 / BINS_PER_OCTAVE), q * 2.0 ** (1.0 / BINS_PER_OCTAVE)
        bin_mass = float(law.cdf(hi) - law.cdf(lo))
        assert abs(float(law.cdf(q)) - p) <= 4.0 * math.sqrt(p * (1 - p) / n) + bin_mass, suffix
    # the sample median X_(r), r = N/2, has F(X_(r)) ~ Beta(r, N - r + 1): the histogram's
    # median lies in that law's central 1 - 2e-4 interval, widened by one bin
    r = n // 2
    f_lo, f_hi = stats.beta.ppf([1e-4, 1.0 - 1e-4], r, n - r + 1)
    median = row["mean_sq_median"]
    assert median is not None
    assert law.ppf(f_lo) * 2.0 ** (-1.0 / BINS_PER_OCTAVE) <= median
    assert median <= law.ppf(f_hi) * 2.0 ** (1.0 / BINS_PER_OCTAVE)


def exact_configs() -> dict[str, SimConfig]:
    """Plain Gaussian kernels: variance 1/fan_in for linear, 2/fan_in (kaiming) for relu."""
    out = {}
    for activation, scheme in (
        (
            "linear",
            canonical_scheme(
                INIT_SCHEMES, "variance_scaling", {"distribution": "untruncated_normal"}
            ),
        ),
        ("relu", canonical_scheme(INIT_SCHEMES, "kaiming_normal", {})),
    ):
        for width, depth, n0 in ((16, 6, 12), (256, 3, 200)):
            out[f"{activation}-{width}"] = dataclasses.replace(
                sim_config(activation, depth=depth, width=width, input_dim=n0, batch=1),
                init=scheme,
                sampler="conditional",
            )
    out["relu-2-collapsing"] = dataclasses.replace(
        out["relu-16"], width=2, input_dim=3, depth=5, sampler="dense"
    )
    out["linear-16-dense"] = dataclasses.replace(out["linear-16"], sampler="dense")
    return out


EXACT = exact_configs()


@pytest.mark.parametrize("config", list(EXACT.values()), ids=list(EXACT))
def test_log_mean_sq_mean_and_variance_match_the_exact_law(config: SimConfig) -> None:
    """E and Var of log mean_sq over trials within 4 SE of the exact chi-square products, at
    every layer and quantity the law covers (relu width 2: a quarter of the trials die at each
    layer and are left out, exactly the conditioning of the law on K_l >= 1)."""
    exact = exact_log_mean_sq(config)
    assert exact is not None
    compared = 0
    for record in records(config, 600):
        law = exact.get(record.key)
        if law is None:
            assert record.quantity == "gradient" and config.activation.name == "relu"
            continue
        assert record.dist is not None
        log = record.dist.log_mean_sq
        assert log.n == record.n_finite - record.n_collapsed
        hist = record.dist.mean_sq
        assert dict(zip(hist.keys, hist.counts, strict=True)).get(0, 0) == record.n_collapsed
        mean, var = law
        assert abs(log.mean - mean) <= 4.0 * log.sem, (record.key, log.mean, mean, log.sem)
        assert abs(log.variance - var) <= 4.0 * log.variance_se, (
            record.key,
            log.variance,
            var,
            log.variance_se,
        )
        compared += 1
    assert compared == len(exact)


def test_log_mean_sq_is_exact_where_mean_sq_exceeds_float64() -> None:
    """Linear N(0, 1) weights at width 100, float64: mean_sq(h^200) ~ 1e400 is beyond float64
    (kept in scaled form; the mean_sq column is None), while its log keeps the exact law within
    4 SE."""
    config = dataclasses.replace(
        EXACT["linear-16"],
        init=canonical_scheme(INIT_SCHEMES, "normal", {"std": 1.0}),
        width=100,
        input_dim=100,
        depth=200,
        dtype="float64",
    )
    exact = exact_log_mean_sq(config)
    assert exact is not None
    (top,) = [r for r in records(config, 200) if r.key == (200, "activation")]
    assert top.n_finite == 200 and math.isinf(top.mean_sq.value)  # beyond float64, scaled
    assert top.dist is not None
    log = top.dist.log_mean_sq
    mean, var = exact[(200, "activation")]
    assert mean > 709.8  # beyond float64
    assert abs(log.mean - mean) <= 4.0 * log.sem
    assert abs(log.variance - var) <= 4.0 * log.variance_se
