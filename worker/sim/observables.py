"""Per-trial observables of one (layer, quantity), and their sufficient statistics over trials.

Per trial, over the n = batch * units values v of a (layer, quantity), in float64 (cast first,
so float32 values can neither overflow nor lose precision in the sums):

    mean    = sum(v) / n
    std     = sqrt(sum((v - mean)^2) / n)       two-pass, ddof=0 like tf.math.reduce_std
    mean_sq = sum(v^2) / n                      the mean-field q^l for preactivations
    finite  = mean, std, mean_sq all finite     equivalent to "every v finite and the three
                                                observables finite": an inf or NaN value makes
                                                sum(v^2) inf or NaN
    collapsed = finite and max |v| == 0         exact zero (underflow), tested on the raw values

Over the trials of a sub-batch (numpy, float64): `n_finite`, `n_collapsed`, `n_first_nonfinite`
(trials whose first non-finite layer, in propagation order, is this one: increasing l for
preactivation/activation, decreasing l for gradient, which flows from layer depth down to 1)
and `worker.stats.Moments` of each observable over the finite trials.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from worker.contract import LayerRecord
from worker.stats import moments_columns


def trial_observables(v: tf.Tensor) -> tf.Tensor:
    """Observables of T trials of one layer: v (T, ...) -> (T, 4) float64.

    Columns: mean, std, mean_sq, max|v|. All reductions are over every axis but the first.
    """
    x = tf.reshape(v, [tf.shape(v)[0], -1])
    xd = tf.cast(x, tf.float64)
    mean = tf.reduce_mean(xd, axis=1)
    dev = xd - mean[:, tf.newaxis]
    std = tf.sqrt(tf.reduce_mean(tf.square(dev), axis=1))
    mean_sq = tf.reduce_mean(tf.square(xd), axis=1)
    # max|v| in the compute dtype: exact, and cheaper than in float64.
    peak = tf.cast(tf.reduce_max(tf.abs(x), axis=1), tf.float64)
    return tf.stack([mean, std, mean_sq, peak], axis=1)


def layers_observables(values: list[tf.Tensor]) -> tf.Tensor:
    """Observables of consecutive layers: list of (T, ...) -> (T, L, 4) float64.

    Per layer rather than on a stacked tensor so the float64 temporaries are one layer's worth
    (the memory model of worker.memory counts activations once, float64 scratch per layer).
    """
    return tf.stack([trial_observables(v) for v in values], axis=1)


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
        """From the (T, L, 4) output of `layers_observables`."""
        return cls(first_layer, obs[..., 0], obs[..., 1], obs[..., 2], obs[..., 3])

    @property
    def finite(self) -> npt.NDArray[np.bool_]:
        return np.isfinite(self.mean) & np.isfinite(self.std) & np.isfinite(self.mean_sq)

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


def quantity_records(quantity: str, trials: QuantityTrials, *, reverse: bool) -> list[LayerRecord]:
    """LayerRecords of one quantity for every layer of `trials` (one sub-batch)."""
    finite = trials.finite
    n_trials = finite.shape[0]
    first = first_nonfinite_counts(finite, reverse=reverse)
    collapsed = trials.collapsed.sum(axis=0)
    n_finite = finite.sum(axis=0)
    moms = {
        name: moments_columns(getattr(trials, name), finite) for name in ("mean", "std", "mean_sq")
    }
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
        )
        for j in range(finite.shape[1])
    ]
