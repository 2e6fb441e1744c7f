"""Per-trial observables of one (layer, quantity), the sub-batch both samplers observe, and the
observables' sufficient statistics over trials.

Per trial, over the n = batch * units values v of a (layer, quantity), in float64 (cast first,
so float32 values can neither overflow nor lose precision in the sums):

    mean    = sum(v) / n
    std     = sqrt(sum((v - mean)^2) / n)       two-pass, ddof=0 like tf.math.reduce_std
    mean_sq = sum(v^2) / n                      the mean-field q^l for preactivations
    finite  = every v finite                    (a statistic never overflows before the values;
                                                see below; mean_sq may exceed float64, +inf)
    collapsed = finite and max |v| == 0         exact zero (underflow), tested on the raw values

Exact up to float64's limits: where max|v| is outside [2^-400, 2^480] the values are scaled by
a power of two near 1/max|v| before any square (`trial_observables`); elsewhere (every float32,
float16 and bfloat16 value, every ordinary float64 one) the sums are the unscaled ones, bit for bit.

Over the trials of a sub-batch (numpy, float64): `n_finite`, `n_collapsed`, `n_first_nonfinite`
(trials whose first non-finite layer, in propagation order, is this one: increasing l for
preactivation/activation, decreasing l for gradient, which flows from layer depth down to 1)
and `worker.stats.Moments` of each observable over the finite trials; and their per-trial
distribution (`trial_distributions`): `Moments4` of log(mean_sq) (`log_mean_sq`, exact beyond
float64's range through the root mean square) and a `worker.histogram.Histogram` of each
observable, whose bins do not depend on the sub-batch (integer counts, merged exactly).

`SubBatch` is what the dense and the conditional sampler both start from for T trials: dtypes,
the activation, N(0, 1) draws on any stream, and the input x and readout r (on the same streams
under both samplers, as are the biases, so a trial's x, r and b do not depend on the sampler);
per-layer observables go into `observables_array`s and come out (T, D, 4) through `by_trial`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from worker import histogram
from worker.contract import LayerRecord, TrialDistribution
from worker.sim import rng
from worker.sim.activations import Activation, activation
from worker.sim.network import Network, Scalar, constant
from worker.stats import moments4_columns, moments_columns


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
    """A TensorArray for the (T, 4) float64 `trial_observables` of `depth` layers."""
    return tf.TensorArray(tf.float64, size=depth, element_shape=tf.TensorShape([None, 4]))


# Per-trial values whose max |v| lies in [SAFE_LO, SAFE_HI] (or is 0) are reduced as they are:
# n * max|v|^2 neither overflows nor underflows in float64, so those bits are exactly the
# unscaled sums'. Every float32/float16/bfloat16 value is in range (2^-149 .. 2^128), and so is
# every ordinary float64 configuration. Outside it (float64 only) the values are first scaled by
# a power of two 2^-e near 1/max|v| (exact), reduced, and scaled back.
SAFE_LO = 2.0**-400
SAFE_HI = 2.0**480


def pow2_scale(peak: tf.Tensor, ordinary: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """(down, up) = (2^k, 2^-k) per element of `peak`: peak * down in [2, 4) where it can be,
    k clipped to [minexp, -minexp] of peak's dtype so that each factor is one normal number (a
    product of two factors would be folded by grappler's broadcast minimisation into one that
    may be subnormal, hence flushed to 0). k = 0 where `ordinary`, or peak is 0 or not finite.
    Multiplying by a power of two is exact: norms, QR and sums commute with it bit for bit."""
    lo = float(np.finfo(peak.dtype.as_numpy_dtype).minexp)
    ok = tf.math.is_finite(peak) & (peak > 0)
    if ordinary is not None:
        ok = ok & ~ordinary
    safe = tf.where(ok, peak, tf.ones_like(peak))
    e = tf.math.floor(tf.math.log(safe) / tf.constant(np.log(2.0), peak.dtype))
    k = tf.where(ok, tf.clip_by_value(1.0 - e, lo, -lo), tf.zeros_like(peak))
    two = tf.constant(2.0, peak.dtype)
    return tf.pow(two, k), tf.pow(two, -k)


def trial_observables(v: tf.Tensor) -> tf.Tensor:
    """Observables of T trials of one layer: v (T, ...) -> (T, 4) float64.

    Columns: mean, std, mean_sq, peak. All reductions are over every axis but the first.
    peak is max|v| when every value is finite and +inf otherwise, so a trial is non-finite
    exactly when one of its values is (`QuantityTrials.finite`). mean and std are bounded by
    max|v| and always representable; mean_sq = s^2 mean((v/s)^2) is exact up to float64's
    range: +inf where it exceeds float64 (|v| > ~1.3e154) with every value finite, 0 where it
    is below float64's normal range (TF on CPU flushes subnormals).
    """
    x = tf.reshape(v, [tf.shape(v)[0], -1])
    xd = tf.cast(x, tf.float64)
    all_finite = tf.reduce_all(tf.math.is_finite(xd), axis=1)
    absmax = tf.reduce_max(tf.abs(xd), axis=1)
    ordinary = (absmax >= SAFE_LO) & (absmax <= SAFE_HI)
    down, up = pow2_scale(absmax, ordinary)
    # k = 0 (factors exactly 1) for ordinary trials: they reduce exactly the unscaled values.
    u = xd * down[:, tf.newaxis]
    mean_u = tf.reduce_mean(u, axis=1)
    dev = u - mean_u[:, tf.newaxis]
    std_u = tf.sqrt(tf.reduce_mean(tf.square(dev), axis=1))
    msq_u = tf.reduce_mean(tf.square(u), axis=1)
    mean = mean_u * up
    std = std_u * up
    # rms = sqrt(msq_u) up <= max|v| is representable, up^2 may not be
    mean_sq = tf.where(ordinary, msq_u, tf.square(tf.sqrt(msq_u) * up))
    # max|v| in the compute dtype: exact, and cheaper than in float64.
    peak = tf.cast(tf.reduce_max(tf.abs(x), axis=1), tf.float64)
    peak = tf.where(all_finite, peak, tf.constant(np.inf, tf.float64))
    return tf.stack([mean, std, mean_sq, peak], axis=1)


def by_trial(ta: tf.TensorArray) -> tf.Tensor:
    """TensorArray of D (T, 4) entries (one per layer, as `trial_observables` writes them) ->
    (T, D, 4)."""
    return tf.transpose(ta.stack(), [1, 0, 2])


@dataclass(frozen=True)
class QuantityTrials:
    """Per-trial observables of one quantity over layers `first_layer..`: arrays (T, L)."""

    first_layer: int
    mean: npt.NDArray[np.float64]
    std: npt.NDArray[np.float64]
    mean_sq: npt.NDArray[np.float64]
    peak: npt.NDArray[np.float64]

    @classmethod
    def from_array(cls, first_layer: int, obs: npt.NDArray[np.float64]) -> QuantityTrials:
        """From a (T, L, 4) observables array (as `by_trial` returns)."""
        return cls(first_layer, obs[..., 0], obs[..., 1], obs[..., 2], obs[..., 3])

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

    Where 0 < mean_sq < inf: log(mean_sq) and `histogram.bin_index(mean_sq)`. Where mean_sq is
    beyond float64 (+inf, or 0 below its normal range) but the trial is finite and not all 0,
    from the root mean square rms = hypot(mean, std) (mean_sq = mean^2 + std^2 with ddof 0;
    both are bounded by max|v| and representable): 2 log(rms) and the bin of rms^2,
    `bin_index(rms, 2 R)`. -inf (and bin 0) where rms is 0 too; entries of non-finite trials
    are meaningless (masked by the callers). Elementwise, so a trial's values do not depend
    on the sub-batch it is in.
    """
    ms = trials.mean_sq
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ordinary = (ms > 0.0) & np.isfinite(ms)
        rms = np.hypot(trials.mean, trials.std)
        rooted = ~ordinary & (rms > 0.0) & np.isfinite(rms)
        log = np.full(ms.shape, -np.inf)
        log[ordinary] = np.log(ms[ordinary])
        log[rooted] = 2.0 * np.log(rms[rooted])
    k = np.zeros(ms.shape, dtype=np.int64)
    k[ordinary] = histogram.bin_index(ms[ordinary])
    k[rooted] = histogram.bin_index(rms[rooted], 2 * histogram.BINS_PER_OCTAVE)
    return log, k


def trial_distributions(trials: QuantityTrials, dtype: str) -> list[TrialDistribution]:
    """The `TrialDistribution` of each layer of `trials` over its finite trials (one sub-batch):
    moments of log(mean_sq) where it is > -inf, histograms of mean, std and mean_sq."""
    finite = trials.finite
    log, k = log_mean_sq(trials)
    logs = moments4_columns(log, finite & np.isfinite(log))
    ms_keys = histogram.keys_from_index(k, np.where(np.isfinite(log), 1.0, 0.0), dtype)
    hists = {
        name: histogram.histogram_columns(
            histogram.keys(np.where(finite, values, 0.0), dtype), finite
        )
        for name, values in (("mean", trials.mean), ("std", trials.std))
    }
    hists["mean_sq"] = histogram.histogram_columns(ms_keys, finite)
    return [
        TrialDistribution(logs[j], hists["mean"][j], hists["std"][j], hists["mean_sq"][j])
        for j in range(finite.shape[1])
    ]


def quantity_records(
    quantity: str, trials: QuantityTrials, *, reverse: bool, dtype: str
) -> list[LayerRecord]:
    """LayerRecords of one quantity for every layer of `trials` (one sub-batch) of a
    configuration computed in `dtype` (the span of its histograms: `worker.histogram`)."""
    finite = trials.finite
    n_trials = finite.shape[0]
    first = first_nonfinite_counts(finite, reverse=reverse)
    collapsed = trials.collapsed.sum(axis=0)
    n_finite = finite.sum(axis=0)
    moms = {
        name: moments_columns(getattr(trials, name), finite) for name in ("mean", "std", "mean_sq")
    }
    dists = trial_distributions(trials, dtype)
    return [
        LayerRecord(
            layer=trials.first_layer + j,
            quantity=quantity,
            n_trials=int(n_trials),
            n_finite=int(n_finite[j]),
            n_first_nonfinite=int(first[j]),
            n_collapsed=int(collapsed[j]),
            mean=moms["mean"][j],
            std=moms["std"][j],
            mean_sq=moms["mean_sq"][j],
            dist=dists[j],
        )
        for j in range(finite.shape[1])
    ]
