"""Mean-field theory of signal and gradient propagation at initialization (numpy/scipy only).

`meanfield.predict(config)` gives every (layer, quantity) of a configuration, its phase and depth
scales; it rests on four layers below it, each importing only those above it in this list:

- `weights`:      mean and variance of one kernel entry (theory's own derivation of the init law)
- `gaussian`:     phi, phi', phi''; Gaussian expectations by closed forms and quadrature
- `finite_width`: the log-normal walk of the row norm; spread of mean_sq; the finite-width note;
                  the exact law of log mean_sq (linear, relu; Gaussian weights, no bias)
- `precision`:    dtype limits and subnormal behaviour per device; overflow and collapse laws
- `corrections`:  the interval each statistic may lie in at finite width (stated multiple of the
                  O(depth/width) correction; std's Hoelder bound)
- `meanfield`:    q- and c-maps, fixed points, chi_1, depth scales, phase, `predict`
- `correlation`:  the two-input map iterated from (q^0, c^0), c*, xi_c, xi_grad,
                  `predict_correlations` (per-layer corr and cross)
- `depth_fit`:    xi_c and xi_grad fitted from measured per-layer values, with SEs
"""

from __future__ import annotations

from scheduler.analysis.theory.corrections import FINITE_WIDTH_MULTIPLE, Bounds, layer_bounds
from scheduler.analysis.theory.correlation import (
    CorrelationMap,
    CorrelationTheory,
    LayerCorrelation,
    correlation_map,
    depth_scales,
    predict_correlations,
)
from scheduler.analysis.theory.depth_fit import (
    DepthFit,
    fit_depth_scale,
    fit_gradient_scale,
    fit_like,
)
from scheduler.analysis.theory.finite_width import (
    exact_log_mean_sq,
    finite_width_note,
    mean_sq_dispersion,
)
from scheduler.analysis.theory.gaussian import (
    ActivationMoments,
    activation_moments,
    bivariate_expectation,
)
from scheduler.analysis.theory.meanfield import (
    PHASE_TOL,
    ConfigTheory,
    LayerTheory,
    critical_sigma_w,
    predict,
    predict_many,
    predict_map,
)
from scheduler.analysis.theory.precision import (
    DTYPE_LIMITS,
    Underflow,
    horizon,
    overflow_cdf,
    overflow_layer,
    underflow_cdf,
    underflow_layer,
    underflow_model,
)
from scheduler.analysis.theory.weights import TRUNCATED_VARIANCE_FACTOR, weight_moments

__all__ = [
    "DTYPE_LIMITS",
    "FINITE_WIDTH_MULTIPLE",
    "PHASE_TOL",
    "TRUNCATED_VARIANCE_FACTOR",
    "ActivationMoments",
    "Bounds",
    "ConfigTheory",
    "CorrelationMap",
    "CorrelationTheory",
    "DepthFit",
    "LayerCorrelation",
    "LayerTheory",
    "Underflow",
    "activation_moments",
    "bivariate_expectation",
    "correlation_map",
    "critical_sigma_w",
    "depth_scales",
    "exact_log_mean_sq",
    "finite_width_note",
    "fit_depth_scale",
    "fit_gradient_scale",
    "fit_like",
    "horizon",
    "layer_bounds",
    "mean_sq_dispersion",
    "overflow_cdf",
    "overflow_layer",
    "predict",
    "predict_correlations",
    "predict_many",
    "predict_map",
    "underflow_cdf",
    "underflow_layer",
    "underflow_model",
    "weight_moments",
]
