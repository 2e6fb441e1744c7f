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
        """(x, r) in dtype: h^0 = x (T, batch, input_dim) from N(0, I) draws g at stream
        (0, INPUT), then the readout r (T, batch, width) of L = <r, h^D> at stream (0, READOUT):
        N(0, I) per input, or one N(0, I) row shared by the batch where the configuration
        prescribes an input geometry (`input_geometry`, which turns g into x)."""
        net = self.config
        b, n_in, n = net.batch, net.input_dim, net.width
        x = self.normal(b * n_in, rng.stream_id(0, rng.Purpose.INPUT), [b, n_in])
        if net.input_q is not None:
            x = input_geometry(x, net.input_q, net.input_corr)
        x = tf.cast(x, self.dtype)
        if not net.shared_readout:
            r = self.normal(b * n, rng.stream_id(0, rng.Purpose.READOUT), [b, n])
            return x, tf.cast(r, self.dtype)
        r = self.normal(n, rng.stream_id(0, rng.Purpose.READOUT), [1, n])
        return x, tf.tile(tf.cast(r, self.dtype), [1, b, 1])


def input_geometry(g: tf.Tensor, q0: Scalar, c0: Scalar | None) -> tf.Tensor:
    """Inputs of a prescribed geometry from Gaussian draws g (T, k, n), in float64 (T, k, n).

    c0 None: x_a = sqrt(q0 n) g_a / |g_a|, so |x_a|^2 / n = q0 (directions uniform on the
    sphere, independent). Otherwise, with f_1..f_k the orthonormal rows of a Haar-random frame
    (thin QR g^T = Q R, columns of Q signed so that diag(R) > 0: Q is then Haar distributed,
    Mezzadri 2007) and m = (1/k) sum_a f_a:

        x_a = sqrt(q0 n) (sqrt(1 - c0) (f_a - m) + sqrt(1 + (k - 1) c0) m)

    Since <f_a - m, f_b - m> = delta_ab - 1/k, <f_a - m, m> = 0 and |m|^2 = 1/k, the Gram
    matrix is <x_a, x_b> = q0 n ((1 - c0) delta_ab + c0): every input has |x_a|^2 / n = q0 and
    every pair correlation c0, for any c0 in [-1/(k-1), 1] (the centred simplex at the lower
    end, identical inputs at 1), exactly up to float64 rounding (then rounded once to the
    dtype). The law of X is the unique rotation-invariant one with this Gram matrix. Needs
    k <= n (the spec checks it). A zero draw g_a (probability 0) gives a zero input.
    """
    gd = tf.cast(g, tf.float64)
    n = tf.cast(tf.shape(gd)[-1], tf.float64)
    radius = tf.sqrt(constant(q0, tf.float64) * n)
    if c0 is None:
        norm = tf.norm(gd, axis=-1, keepdims=True)
        safe = tf.where(norm > 0, norm, tf.ones_like(norm))
        return gd / safe * radius
    k = gd.shape[1]
    q, r = tf.linalg.qr(tf.linalg.matrix_transpose(gd), full_matrices=False)  # (T, n, k)
    diag = tf.linalg.diag_part(r)
    sign = tf.where(diag < 0, -tf.ones_like(diag), tf.ones_like(diag))  # (T, k)
    frame = tf.linalg.matrix_transpose(q) * sign[:, :, tf.newaxis]  # rows f_a (T, k, n)
    m = tf.reduce_mean(frame, axis=1, keepdims=True)
    c = constant(c0, tf.float64)
    spread = tf.sqrt(tf.maximum(1.0 - c, 0.0))
    common = tf.sqrt(tf.maximum(1.0 + (k - 1) * c, 0.0))
    return (spread * (frame - m) + common * m) * radius


def observables_array(depth: int | tf.Tensor, batch: int) -> tf.TensorArray:
    """A TensorArray for the (T, `n_columns(batch)`) float64 `trial_observables` of `depth`
    layers."""
    return tf.TensorArray(
        tf.float64, size=depth, element_shape=tf.TensorShape([None, n_columns(batch)])
    )


# Per-trial values whose max |v| lies in [SAFE_LO, SAFE_HI] (or is 0) are reduced as they are
# (`worker.stats`: n * max|v|^2 neither overflows nor underflows in float64), so those bits are
# exactly the unscaled sums'. Every float32/float16/bfloat16 value is in range (2^-149 .. 2^128),
# and so is every ordinary float64 configuration. Outside it (float64 only) the values are first
# scaled by a power of two 2^k near 1/max|v| (exact), reduced, and scaled back.
N_COLUMNS = 5  # mean, std, mean_sq (scaled), peak, mean_sq's binary exponent e
N_PAIR_COLUMNS = 2  # batch >= 2: cross (q_ab, scaled like mean_sq), corr


def n_columns(batch: int) -> int:
    """Columns of `trial_observables` of values (T, batch, units): the pair columns for
    batch >= 2 only (batch 1 computes exactly what it did before they existed)."""
    return N_COLUMNS + (N_PAIR_COLUMNS if batch >= 2 else 0)


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
    """Observables of T trials of one layer: v (T, ...) -> (T, C) float64.

    Columns: mean, std, mean_sq (all three scaled), peak, e = mean_sq's binary exponent, and
    for v of static shape (T, k, units) with k >= 2 `pair_observables` (C = `n_columns(k)`).
    All reductions are over every axis but the first. peak is max|v| when every value is finite
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
    columns = [mean_u, std_u, msq_u, peak, -2.0 * k]
    batch = v.shape[1] if v.shape.rank == 3 else None
    if batch is not None and batch >= 2:
        cross_u, corr = pair_observables(tf.reshape(u, [tf.shape(v)[0], batch, -1]))
        columns += [cross_u, tf.where(all_finite, corr, tf.constant(np.nan, tf.float64))]
    return tf.stack(columns, axis=1)


def pair_observables(u: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(cross, corr) of T trials of k >= 2 vectors: u (T, k, m) float64 -> two (T,) tensors.

    Over the P = k(k-1)/2 pairs a < b of rows u_a (m values each), in O(k m) operations:

        cross = (1/P) sum_{a<b} <u_a, u_b> / m = (|sum_a u_a|^2 - sum_a |u_a|^2) / (2 P m)
        corr  = (1/P) sum_{a<b} <w_a, w_b> = (|sum_a w_a|^2 - sum_a |w_a|^2) / (2 P),
                w_a = u_a / |u_a|

    (the cross second moment q_ab of Poole et al. 2016, and the correlation c_ab = q_ab /
    sqrt(q_aa q_bb) averaged over pairs). u are `trial_observables`' scaled values, so cross
    is in mean_sq's scaled form (times 2^e); corr is scale-free, and each row is first scaled
    by its own power of two (`pow2_scale`, exact) before its norm, so no norm under- or
    overflows however different the rows' sizes. corr is NaN where some row is all zero (its
    correlation is undefined). Rounding: the subtraction costs an absolute error of a few
    units of float64's eps times mean(u^2) (cross) or 1 (corr).
    """
    k = u.shape[1]
    pairs = k * (k - 1) / 2.0
    m = tf.cast(tf.shape(u)[2], tf.float64)
    total = tf.reduce_sum(u, axis=1)
    cross = (tf.reduce_sum(tf.square(total), axis=1) - tf.reduce_sum(tf.square(u), axis=[1, 2])) / (
        2.0 * pairs * m
    )
    row_peak = tf.reduce_max(tf.abs(u), axis=2, keepdims=True)  # (T, k, 1)
    down, _ = pow2_scale(row_peak)
    s = u * down
    norm = tf.sqrt(tf.reduce_sum(tf.square(s), axis=2, keepdims=True))
    zero = tf.reduce_any(tf.equal(row_peak, 0.0), axis=[1, 2])
    w = s / tf.where(norm > 0, norm, tf.ones_like(norm))
    w_total = tf.reduce_sum(w, axis=1)
    corr = (
        tf.reduce_sum(tf.square(w_total), axis=1) - tf.reduce_sum(tf.square(w), axis=[1, 2])
    ) / (2.0 * pairs)
    return cross, tf.where(zero, tf.constant(np.nan, tf.float64), corr)


def by_trial(ta: tf.TensorArray) -> tf.Tensor:
    """TensorArray of D (T, N_COLUMNS) entries (one per layer, as `trial_observables` writes
    them) -> (T, D, N_COLUMNS)."""
    return tf.transpose(ta.stack(), [1, 0, 2])


@dataclass(frozen=True)
class QuantityTrials:
    """Per-trial observables of one quantity over layers `first_layer..`: arrays (T, L).
    A trial's mean_sq is mean_sq * 2^mean_sq_exp2 (`trial_observables`), and so is its cross;
    cross and corr are None for batch 1 (`pair_observables`; corr NaN where undefined)."""

    first_layer: int
    mean: npt.NDArray[np.float64]
    std: npt.NDArray[np.float64]
    mean_sq: npt.NDArray[np.float64]
    peak: npt.NDArray[np.float64]
    mean_sq_exp2: npt.NDArray[np.float64]
    cross: npt.NDArray[np.float64] | None = None
    corr: npt.NDArray[np.float64] | None = None

    @classmethod
    def from_array(cls, first_layer: int, obs: npt.NDArray[np.float64]) -> QuantityTrials:
        """From a (T, L, C) observables array (as `by_trial` returns): mean and std scaled
        back by 2^(e/2) in numpy (exact; subnormal results kept); the pair columns where C has
        them."""
        half = (obs[..., 4] / 2).astype(np.int32)
        with np.errstate(under="ignore", over="ignore"):
            mean, std = np.ldexp(obs[..., 0], half), np.ldexp(obs[..., 1], half)
        pairs = obs.shape[-1] > N_COLUMNS
        return cls(
            first_layer,
            mean,
            std,
            obs[..., 2],
            obs[..., 3],
            obs[..., 4],
            cross=obs[..., 5] if pairs else None,
            corr=obs[..., 6] if pairs else None,
        )

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
    of log(mean_sq) over the finite trials where it is > -inf, arrays (L,); cross over the
    finite trials and corr over those where it is defined (None for batch 1)."""

    first_layer: int
    n_trials: int
    n_finite: npt.NDArray[np.int64]
    n_first_nonfinite: npt.NDArray[np.int64]
    n_collapsed: npt.NDArray[np.int64]
    mean: MomentsArray
    std: MomentsArray
    mean_sq: MomentsArray
    log_mean_sq: Moments4Array
    cross: MomentsArray | None = None
    corr: MomentsArray | None = None

    @classmethod
    def of(cls, trials: QuantityTrials, *, reverse: bool) -> QuantityStats:
        """Two-pass statistics of `trials` (`reverse`: see `first_nonfinite_counts`)."""
        finite = trials.finite
        log = log_of_mean_sq(trials)
        cross = corr = None
        if trials.cross is not None and trials.corr is not None:
            cross = MomentsArray.of(trials.cross, finite, trials.mean_sq_exp2)
            corr = MomentsArray.of(trials.corr, finite & ~np.isnan(trials.corr))
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
            cross=cross,
            corr=corr,
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
            cross=_merge_optional(self.cross, other.cross),
            corr=_merge_optional(self.corr, other.corr),
        )

    def records(self, quantity: str, hists: list[Histograms]) -> list[LayerRecord]:
        """One LayerRecord per layer; `hists` are `trial_histograms` of the same trials."""
        moms = {name: getattr(self, name).items() for name in ("mean", "std", "mean_sq")}
        logs = self.log_mean_sq.items()
        pairs = {
            name: [None] * len(logs) if moments is None else moments.items()
            for name, moments in (("cross", self.cross), ("corr", self.corr))
        }
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
                cross=pairs["cross"][j],
                corr=pairs["corr"][j],
            )
            for j in range(self.n_finite.shape[0])
        ]


def _merge_optional(a: MomentsArray | None, b: MomentsArray | None) -> MomentsArray | None:
    return None if a is None or b is None else a.merge(b)


def quantity_records(
    quantity: str, trials: QuantityTrials, *, reverse: bool, dtype: str
) -> list[LayerRecord]:
    """LayerRecords of one quantity for every layer of `trials` (one block of trials) of a
    configuration computed in `dtype`."""
    stats = QuantityStats.of(trials, reverse=reverse)
    return stats.records(quantity, trial_histograms(trials, dtype))
