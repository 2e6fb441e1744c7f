"""Per-trial observables of one (layer, quantity), the sub-batch both samplers observe, and the
observables' sufficient statistics over trials.

Per trial, over the n = batch * units values v of a (layer, quantity), in float64 (cast first,
so float32 values can neither overflow nor lose precision in the sums):

    mean    = sum(v) / n
    std     = sqrt(sum((v - mean)^2) / n)       two-pass, ddof=0 like tf.math.reduce_std
    mean_sq = sum(v^2) / n                      the mean-field q^l for preactivations
    finite  = every v finite                    (a statistic never overflows before the values;
                                                see below)
    collapsed = finite and max |v| == 0         exact zero (underflow), tested on the raw values

Exact up to float64's limits: where max|v| is outside [2^-400, 2^480] the values are scaled by
a power of two near 1/max|v| before any square (`trial_observables`); elsewhere (every float32,
float16 and bfloat16 value, every ordinary float64 one) the sums are the unscaled ones, bit for bit.
mean_sq comes with a binary exponent (mean_sq = m 2^e, e = 0 for ordinary trials), so it is
exact beyond float64's range both ways, and its moments over trials are `Moments` in scaled form.

Over the trials of a sub-batch (numpy, float64): `n_finite`, `n_collapsed`, `n_first_nonfinite`
(trials whose first non-finite layer, in propagation order, is this one: increasing l for
preactivation/activation, decreasing l for gradient, which flows from layer depth down to 1)
and `worker.stats.Moments` of each observable over the finite trials (`QuantityStats`, merged
block by block); and their per-trial distribution: `Moments4` of log(mean_sq) (`log_mean_sq`,
exact beyond float64's range through mean_sq's scaled form, in `QuantityStats` too) and a
`worker.histogram.Histogram` of each observable (`trial_histograms`), whose bins do not depend
on the sub-batch (integer counts, merged exactly).

`SubBatch` is what the dense and the conditional sampler both start from for T trials: dtypes,
the activation, N(0, 1) draws on any stream, and the input x and readout r (on the same streams
under both samplers, as are the biases, so a trial's x, r and b do not depend on the sampler);
per-layer observables go into `observables_array`s and come out (T, D, N_COLUMNS) through
`by_trial`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from worker import histogram
from worker.contract import LayerRecord, TrialDistribution
from worker.sim import rng
from worker.sim.activations import Activation, activation
from worker.sim.network import Network, Scalar, constant
from worker.stats import SAFE_HI, SAFE_LO, Moments4Array, MomentsArray


@dataclass(frozen=True)
class SubBatch:
    """Trials [trial_offset, trial_offset + n_trials) of a `Network`, as both samplers open them.

    dtype: the compute dtype; draw_dtype: float64 for float64 configurations, else float32
    (`rng.draw_dtype`: numbers are drawn there and cast once); act: phi and phi'.
    """

    config: Network
    key: tf.Tensor
    trial_offset: tf.Tensor | int
    n_trials: tf.Tensor | int
    dtype: tf.DType
    draw_dtype: tf.DType
    act: Activation

    @classmethod
    def open(
        cls,
        config: Network,
        key: tf.Tensor,
        trial_offset: tf.Tensor | int,
        n_trials: tf.Tensor | int,
    ) -> SubBatch:
        """The sub-batch of `config` for these trials (resolves dtypes and activation)."""
        dtype = tf.as_dtype(config.dtype)
        return cls(
            config=config,
            key=key,
            trial_offset=trial_offset,
            n_trials=n_trials,
            dtype=dtype,
            draw_dtype=rng.draw_dtype(dtype),
            act=activation(config.activation, config.alpha),
        )

    def normal(
        self, m: int, stream: int | tf.Tensor, shape: list[int], std: Scalar | None = None
    ) -> tf.Tensor:
        """`m` N(0, std^2) numbers per trial at `stream`, shape (T, *shape), in the draw dtype
        (std None: 1; a tensor std is a fed scalar of the draw dtype)."""
        flat = rng.draw(
            "normal",
            m,
            self.n_trials,
            key=self.key,
            stream=stream,
            trial_offset=self.trial_offset,
            dtype=self.draw_dtype,
        )
        if std is not None:
            flat = flat * constant(std, self.draw_dtype)
        return tf.reshape(flat, [-1, *shape])

    def inputs(self) -> tuple[tf.Tensor, tf.Tensor]:
        """(x, r) in dtype: h^0 = x (T, batch, input_dim) at stream (0, INPUT), then the readout
        r (T, batch, width) of L = <r, h^D> at stream (0, READOUT), both N(0, I)."""
        b, n_in, n = self.config.batch, self.config.input_dim, self.config.width
        x = self.normal(b * n_in, rng.stream_id(0, rng.Purpose.INPUT), [b, n_in])
        x = tf.cast(x, self.dtype)
        r = self.normal(b * n, rng.stream_id(0, rng.Purpose.READOUT), [b, n])
        return x, tf.cast(r, self.dtype)


def observables_array(depth: int | tf.Tensor) -> tf.TensorArray:
    """A TensorArray for the (T, N_COLUMNS) float64 `trial_observables` of `depth` layers."""
    return tf.TensorArray(tf.float64, size=depth, element_shape=tf.TensorShape([None, N_COLUMNS]))


# Per-trial values whose max |v| lies in [SAFE_LO, SAFE_HI] (or is 0) are reduced as they are
# (`worker.stats`: n * max|v|^2 neither overflows nor underflows in float64), so those bits are
# exactly the unscaled sums'. Every float32/float16/bfloat16 value is in range (2^-149 .. 2^128),
# and so is every ordinary float64 configuration. Outside it (float64 only) the values are first
# scaled by a power of two 2^k near 1/max|v| (exact), reduced, and scaled back.
N_COLUMNS = 5  # mean, std, mean_sq (scaled), peak, mean_sq's binary exponent e


def pow2_exponent(peak: tf.Tensor, ordinary: tf.Tensor | None = None) -> tf.Tensor:
    """k per element of `peak` (an integer, in peak's dtype): peak * 2^k in [2, 4) where it can
    be, clipped to [minexp, -minexp] of peak's dtype so that 2^k and 2^-k are normal numbers.
    k = 0 where `ordinary`, or peak is 0 or not finite."""
    lo = float(np.finfo(peak.dtype.as_numpy_dtype).minexp)
    ok = tf.math.is_finite(peak) & (peak > 0)
    if ordinary is not None:
        ok = ok & ~ordinary
    safe = tf.where(ok, peak, tf.ones_like(peak))
    e = tf.math.floor(tf.math.log(safe) / tf.constant(np.log(2.0), peak.dtype))
    return tf.where(ok, tf.clip_by_value(1.0 - e, lo, -lo), tf.zeros_like(peak))


def pow2_scale(peak: tf.Tensor, ordinary: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """(down, up) = (2^k, 2^-k), k = `pow2_exponent(peak, ordinary)`: each factor is one normal
    number (a product of two factors would be folded by grappler's broadcast minimisation into
    one that may be subnormal, hence flushed to 0). Multiplying by a power of two is exact:
    norms, QR and sums commute with it bit for bit."""
    k = pow2_exponent(peak, ordinary)
    two = tf.constant(2.0, peak.dtype)
    return tf.pow(two, k), tf.pow(two, -k)


def trial_observables(v: tf.Tensor) -> tf.Tensor:
    """Observables of T trials of one layer: v (T, ...) -> (T, N_COLUMNS) float64.

    Columns: mean, std, mean_sq (all three scaled), peak, e = mean_sq's binary exponent. All
    reductions are over every axis but the first. peak is max|v| when every value is finite
    and +inf otherwise, so a trial is non-finite exactly when one of its values is
    (`QuantityTrials.finite`). With u = 2^k v (k = `pow2_exponent`, 0 for ordinary trials,
    whose columns are the unscaled mean(v), std(v), mean(v^2) bit for bit) and e = -2k:
    mean(v) = mean(u) 2^(e/2), std(v) = std(u) 2^(e/2), mean(v^2) = mean(u^2) 2^e, exact up to
    float64's rounding for every finite trial, however far beyond float64's range (the scaling
    back is done in numpy, `QuantityTrials.from_array`, which keeps subnormal results that TF on
    CPU would flush).
    """
    x = tf.reshape(v, [tf.shape(v)[0], -1])
    xd = tf.cast(x, tf.float64)
    all_finite = tf.reduce_all(tf.math.is_finite(xd), axis=1)
    absmax = tf.reduce_max(tf.abs(xd), axis=1)
    ordinary = (absmax >= SAFE_LO) & (absmax <= SAFE_HI)
    k = pow2_exponent(absmax, ordinary)
    down, _ = pow2_scale(absmax, ordinary)
    # k = 0 (factors exactly 1) for ordinary trials: they reduce exactly the unscaled values.
    u = xd * down[:, tf.newaxis]
    mean_u = tf.reduce_mean(u, axis=1)
    dev = u - mean_u[:, tf.newaxis]
    std_u = tf.sqrt(tf.reduce_mean(tf.square(dev), axis=1))
    msq_u = tf.reduce_mean(tf.square(u), axis=1)
    # max|v| in the compute dtype: exact, and cheaper than in float64.
    peak = tf.cast(tf.reduce_max(tf.abs(x), axis=1), tf.float64)
    peak = tf.where(all_finite, peak, tf.constant(np.inf, tf.float64))
    return tf.stack([mean_u, std_u, msq_u, peak, -2.0 * k], axis=1)


def by_trial(ta: tf.TensorArray) -> tf.Tensor:
    """TensorArray of D (T, N_COLUMNS) entries (one per layer, as `trial_observables` writes
    them) -> (T, D, N_COLUMNS)."""
    return tf.transpose(ta.stack(), [1, 0, 2])


@dataclass(frozen=True)
class QuantityTrials:
    """Per-trial observables of one quantity over layers `first_layer..`: arrays (T, L).
    A trial's mean_sq is mean_sq * 2^mean_sq_exp2 (`trial_observables`)."""

    first_layer: int
    mean: npt.NDArray[np.float64]
    std: npt.NDArray[np.float64]
    mean_sq: npt.NDArray[np.float64]
    peak: npt.NDArray[np.float64]
    mean_sq_exp2: npt.NDArray[np.float64]

    @classmethod
    def from_array(cls, first_layer: int, obs: npt.NDArray[np.float64]) -> QuantityTrials:
        """From a (T, L, N_COLUMNS) observables array (as `by_trial` returns): mean and std
        scaled back by 2^(e/2) in numpy (exact; subnormal results kept)."""
        half = (obs[..., 4] / 2).astype(np.int32)
        with np.errstate(under="ignore", over="ignore"):
            mean, std = np.ldexp(obs[..., 0], half), np.ldexp(obs[..., 1], half)
        return cls(first_layer, mean, std, obs[..., 2], obs[..., 3], obs[..., 4])

    @property
    def finite(self) -> npt.NDArray[np.bool_]:
        """Every value of the trial finite (peak is +inf otherwise; see `trial_observables`)."""
        return np.isfinite(self.peak)

    @property
    def collapsed(self) -> npt.NDArray[np.bool_]:
        return self.finite & (self.peak == 0.0)


def first_nonfinite_counts(
    finite: npt.NDArray[np.bool_], *, reverse: bool
) -> npt.NDArray[np.int64]:
    """Per layer, the number of trials whose first non-finite layer is that one.

    finite: (T, L). `reverse` scans layers from last to first (backward propagation order).
    """
    bad = ~np.asarray(finite, dtype=bool)
    if reverse:
        bad = bad[:, ::-1]
    n_layers = bad.shape[1]
    has = bad.any(axis=1)
    first = bad.argmax(axis=1)[has]
    counts = np.bincount(first, minlength=n_layers).astype(np.int64)
    return counts[::-1] if reverse else counts


def log_mean_sq(trials: QuantityTrials) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Per trial and layer: log(mean_sq) and the histogram bin k of mean_sq, arrays (T, L).

    mean_sq = m 2^e in scaled form (`trial_observables`; e = 0 for ordinary trials): where
    m > 0, log(mean_sq) = log(m) + e log 2 and k = `histogram.bin_index(m)` + R e (R =
    BINS_PER_OCTAVE; bin_index shifts exactly with the binary exponent), however far beyond
    float64's range mean_sq itself is. -inf (and bin 0) where mean_sq is 0 (every value 0);
    entries of non-finite trials are meaningless (masked by the callers). Elementwise, so a
    trial's values do not depend on the sub-batch it is in.
    """
    ok, safe, e = _scaled_mean_sq(trials)
    k = np.where(ok, histogram.bin_index(safe) + histogram.BINS_PER_OCTAVE * e, 0)
    return log_of_mean_sq(trials), k.astype(np.int64)


def log_of_mean_sq(trials: QuantityTrials) -> npt.NDArray[np.float64]:
    """`log_mean_sq`'s log alone (the per-block moments need no histogram bins)."""
    ok, safe, e = _scaled_mean_sq(trials)
    return np.where(ok, np.log(safe) + e * math.log(2.0), -np.inf)


def _scaled_mean_sq(
    trials: QuantityTrials,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """(m > 0 and finite, m or 1 there, e) of mean_sq = m 2^e."""
    m = trials.mean_sq
    ok = (m > 0.0) & np.isfinite(m)
    return ok, np.where(ok, m, 1.0), trials.mean_sq_exp2.astype(np.int64)


Histograms = tuple[histogram.Histogram, histogram.Histogram, histogram.Histogram]


def trial_histograms(trials: QuantityTrials, dtype: str) -> list[Histograms]:
    """Per layer, the histograms of mean, std and mean_sq over the finite trials of `trials`
    (a configuration computed in `dtype`: the span of its bins, `worker.histogram`). Integer
    counts on fixed bins: any split of the trials gives the same merged histograms."""
    finite = trials.finite
    log, k = log_mean_sq(trials)
    ms_keys = histogram.keys_from_index(k, np.where(np.isfinite(log), 1.0, 0.0), dtype)
    hists = [
        histogram.histogram_columns(histogram.keys(np.where(finite, values, 0.0), dtype), finite)
        for values in (trials.mean, trials.std)
    ]
    hists.append(histogram.histogram_columns(ms_keys, finite))
    return list(zip(*hists, strict=True))


def merge_histograms(a: list[Histograms], b: list[Histograms]) -> list[Histograms]:
    """Layer by layer, the histograms of two disjoint sets of trials (exact)."""
    return [
        (x[0].merge(y[0]), x[1].merge(y[1]), x[2].merge(y[2])) for x, y in zip(a, b, strict=True)
    ]


@dataclass(frozen=True)
class QuantityStats:
    """Sufficient statistics of one quantity over some trials, per layer `first_layer..`:
    the counts of `LayerRecord`, the `MomentsArray` of each observable and the `Moments4Array`
    of log(mean_sq) over the finite trials where it is > -inf, arrays (L,)."""

    first_layer: int
    n_trials: int
    n_finite: npt.NDArray[np.int64]
    n_first_nonfinite: npt.NDArray[np.int64]
    n_collapsed: npt.NDArray[np.int64]
    mean: MomentsArray
    std: MomentsArray
    mean_sq: MomentsArray
    log_mean_sq: Moments4Array

    @classmethod
    def of(cls, trials: QuantityTrials, *, reverse: bool) -> QuantityStats:
        """Two-pass statistics of `trials` (`reverse`: see `first_nonfinite_counts`)."""
        finite = trials.finite
        log = log_of_mean_sq(trials)
        return cls(
            first_layer=trials.first_layer,
            n_trials=int(finite.shape[0]),
            n_finite=finite.sum(axis=0).astype(np.int64),
            n_first_nonfinite=first_nonfinite_counts(finite, reverse=reverse),
            n_collapsed=trials.collapsed.sum(axis=0).astype(np.int64),
            mean=MomentsArray.of(trials.mean, finite),
            std=MomentsArray.of(trials.std, finite),
            mean_sq=MomentsArray.of(trials.mean_sq, finite, trials.mean_sq_exp2),
            log_mean_sq=Moments4Array.of(log, finite & np.isfinite(log)),
        )

    def merge(self, other: QuantityStats) -> QuantityStats:
        """Pool two disjoint sets of trials: `LayerRecord.merge` layer by layer, vectorised
        (the same operations, hence the same bits)."""
        return QuantityStats(
            first_layer=self.first_layer,
            n_trials=self.n_trials + other.n_trials,
            n_finite=self.n_finite + other.n_finite,
            n_first_nonfinite=self.n_first_nonfinite + other.n_first_nonfinite,
            n_collapsed=self.n_collapsed + other.n_collapsed,
            mean=self.mean.merge(other.mean),
            std=self.std.merge(other.std),
            mean_sq=self.mean_sq.merge(other.mean_sq),
            log_mean_sq=self.log_mean_sq.merge(other.log_mean_sq),
        )

    def records(self, quantity: str, hists: list[Histograms]) -> list[LayerRecord]:
        """One LayerRecord per layer; `hists` are `trial_histograms` of the same trials."""
        moms = {name: getattr(self, name).items() for name in ("mean", "std", "mean_sq")}
        logs = self.log_mean_sq.items()
        return [
            LayerRecord(
                layer=self.first_layer + j,
                quantity=quantity,
                n_trials=self.n_trials,
                n_finite=int(self.n_finite[j]),
                n_first_nonfinite=int(self.n_first_nonfinite[j]),
                n_collapsed=int(self.n_collapsed[j]),
                mean=moms["mean"][j],
                std=moms["std"][j],
                mean_sq=moms["mean_sq"][j],
                dist=TrialDistribution(logs[j], *hists[j]),
            )
            for j in range(self.n_finite.shape[0])
        ]


def quantity_records(
    quantity: str, trials: QuantityTrials, *, reverse: bool, dtype: str
) -> list[LayerRecord]:
    """LayerRecords of one quantity for every layer of `trials` (one block of trials) of a
    configuration computed in `dtype`."""
    stats = QuantityStats.of(trials, reverse=reverse)
    return stats.records(quantity, trial_histograms(trials, dtype))
