"""The seed notebook's printed numbers beside initsweep's, with theory and an explanation per row.

`examples/seed_notebook.yaml` gives every cell of `shared/seed/notebook.txt` (cells 155-163) a
configuration labelled `cell N: ...`. Each notebook cell printed the average over its passes
(1, 100 or 1000) of `tf.reduce_mean(y)` and `tf.math.reduce_std(y)` of one layer; initsweep's
`mean` and `std` of that (layer, activation) are the same statistics averaged over 1000 trials,
with standard errors. Cell 156 printed the 0-based index of the first layer whose
`reduce_mean` is NaN; initsweep counts, per layer, the trials whose forward values first became
non-finite there (1-based layer L = notebook index L - 1).

A notebook average over k passes has its own standard error, sd / sqrt(k), with sd the spread of
one pass (initsweep's SE times sqrt(trials)); `z` is (notebook - initsweep) over both standard
errors combined.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from scheduler.analysis.records import config_of
from scheduler.formatting import number, pm

__all__ = [
    "NOTEBOOK",
    "NotebookCell",
    "cells_of",
    "render_markdown",
    "reproduction_markdown",
    "reproduction_rows",
]

Record = Mapping[str, Any]


@dataclass(frozen=True)
class NotebookCell:
    """What one notebook cell printed, and where (1-based layer of the network it built)."""

    cell: int
    layer: int
    passes: int
    mean: float | None  # None: printed nan
    std: float | None
    printed: str


NOTEBOOK: tuple[NotebookCell, ...] = (
    NotebookCell(155, 100, 1, None, None, "tf.Tensor(nan) tf.Tensor(nan)"),
    NotebookCell(156, 38, 1, None, None, "37"),  # index 37 = layer 38 (1-based)
    NotebookCell(157, 100, 1, 1.0689624e-32, 0.0, "1.0689624e-32 0.0"),
    NotebookCell(158, 1, 1000, -0.00431403724104166, 22.624842472076416, "-0.00431 22.6248"),
    NotebookCell(159, 1, 1000, -0.0004035784816369414, 0.9976319864988327, "-0.000404 0.99763"),
    NotebookCell(160, 1, 1000, 0.001258103971136734, 0.627060652911663, "0.00126 0.62706"),
    NotebookCell(161, 1, 100, 0.00859007661230862, 0.23150178030133248, "0.00859 0.23150"),
    NotebookCell(162, 1, 100, -0.09331645273603499, 0.30846175507642326, "-0.0933 0.30846"),
    NotebookCell(163, 1, 100, 0.27805046624562235, 0.1972163485432975, "0.27805 0.19722"),
)
FIRST_NAN_INDEX = 37  # cell 156's output

_CELL_RE = re.compile(r"\bcell\s+(\d+)((?:/\d+)*)")


def cells_of(label: Any) -> set[int]:
    """Notebook cells a configuration label names: `cell 155/156: ...` -> {155, 156}."""
    match = _CELL_RE.search(str(label or ""))
    if match is None:
        return set()
    return {int(match[1]), *(int(x) for x in match[2].split("/") if x)}


def _z(notebook: float, passes: int, observed: float, se: float, n: int) -> float | None:
    """(notebook - observed) over the combined SE; the notebook's SE is sd / sqrt(passes)."""
    if not se > 0.0:
        return None
    se_notebook = se * math.sqrt(n / passes)
    return (notebook - observed) / math.hypot(se_notebook, se)


def _row(
    cell: NotebookCell,
    statistic: str,
    notebook: str,
    initsweep: str,
    theory: str,
    explanation: str,
    **values: Any,
) -> dict[str, Any]:
    return {
        "cell": cell.cell,
        "statistic": statistic,
        "layer": cell.layer,
        "notebook_passes": cell.passes,
        "notebook": notebook,
        "initsweep": initsweep,
        "theory": theory,
        "explanation": explanation,
        "notebook_value": None,
        "observed": None,
        "observed_se": None,
        "theory_value": None,
        "z": None,
        **values,
    }


def _by_cell(records: Iterable[Record]) -> dict[int, dict[tuple[int, str], Record]]:
    out: dict[int, dict[tuple[int, str], Record]] = {}
    for r in records:
        for cell in cells_of(r.get("label")):
            out.setdefault(cell, {})[(int(r["layer"]), str(r["quantity"]))] = r
    return out


def _first_nonfinite(layers: Mapping[tuple[int, str], Record]) -> tuple[dict[int, int], int]:
    """Trials whose forward values first became non-finite at each layer, and n_trials."""
    counts: dict[int, int] = {}
    n = 0
    for (layer, quantity), r in layers.items():
        if quantity == "activation" and layer >= 1:
            counts[layer] = int(r["n_first_nonfinite"])
            n = int(r["n_trials"])
    return counts, n


def _median_layer(counts: Mapping[int, int], n: int) -> int | None:
    total = 0
    for layer in sorted(counts):
        total += counts[layer]
        if total * 2 >= n:
            return layer
    return None


def _theory_mean(r: Record) -> float | None:
    value = r.get("theory_mean")
    if value is None:
        return None
    scale = r.get("theory_std") or 1.0
    return 0.0 if abs(float(value)) < 1e-12 * float(scale) else float(value)


def _exploded_rows(cell: NotebookCell, layers: Mapping[tuple[int, str], Record]) -> list[Any]:
    counts, n = _first_nonfinite(layers)
    top = layers.get((cell.layer, "activation"))
    predicted = next((r.get("theory_overflow_layer") for r in layers.values()), None)
    theory = f"overflow at layer ≈ {predicted:.1f}" if predicted is not None else "—"
    last = max((layer for layer, k in counts.items() if k), default=None)
    if cell.cell == 155:
        bad = n - int(top["n_finite"]) if top is not None else n
        return [
            _row(
                cell,
                f"mean, std (layer {cell.layer})",
                "nan, nan (1 pass)",
                f"non-finite in {bad}/{n} trials at layer {cell.layer} (every trial by layer "
                f"{last})",
                theory,
                "Agrees. Each N(0, 1) 100x100 layer multiplies E[mean_sq] by fan_in = 100, so "
                "float32 (max 3.4e38) overflows near layer 38-39 in every trial; once a layer "
                "holds ±inf, the next matmul adds +inf and -inf, and reduce_mean/reduce_std "
                "of NaNs print nan.",
                observed=float(bad),
                theory_value=predicted,
            )
        ]
    median = _median_layer(counts, n)
    fractions = {layer: counts.get(layer, 0) / max(n, 1) for layer in range(37, 41)}
    nb_layer = FIRST_NAN_INDEX + 1
    early = (counts.get(nb_layer - 1, 0) + counts.get(nb_layer, 0)) / max(n, 1)
    mode = max(counts, key=counts.__getitem__, default=nb_layer)
    shown = ", ".join(f"{layer}: {frac:.1%}" for layer, frac in fractions.items())
    return [
        _row(
            cell,
            "first non-finite layer",
            f"index {FIRST_NAN_INDEX} = layer {FIRST_NAN_INDEX + 1} (1 pass)",
            f"median layer {median}; fraction first non-finite at layer {shown}",
            theory,
            f"Agrees. initsweep's trials first turn non-finite at layer {mode} most often "
            f"({counts.get(mode, 0) / max(n, 1):.0%}); theory's expected first overflow is "
            f"{number(predicted, 3)}. The notebook's `isnan(reduce_mean(x))` lags the first inf "
            "by up to a layer (a layer whose infs share one sign has an inf mean, not a NaN; "
            "the next matmul adds +inf and -inf), so its pass, which printed index "
            f"{FIRST_NAN_INDEX} (layer {nb_layer}), first overflowed at layer {nb_layer - 1} or "
            f"{nb_layer}: {early:.0%} of initsweep's trials do, an early but ordinary pass.",
            notebook_value=float(FIRST_NAN_INDEX + 1),
            observed=float(median) if median is not None else None,
            theory_value=predicted,
            first_nonfinite=fractions,
        )
    ]


def _explain(cell: int, statistic: str, z: float | None, r: Record) -> str:
    """Why the notebook's number and initsweep's differ (or agree)."""
    agree = ""
    if z is not None:
        verdict = "Agrees" if abs(z) < 3.0 else "Differs"
        agree = f"{verdict} (z = {z:+.1f} with the notebook's own SE). "
    if cell in (161, 162, 163) and z is not None:
        agree = agree.replace("own SE). ", "own SE, √10 ≈ 3.2x initsweep's: 100 passes). ")
    if cell == 157:
        if statistic == "mean":
            return (
                agree + "One pass: E[mean] = 0, and its scale is that of the values: each layer "
                "multiplies the std by 0.05·√100 = 0.5, so after 100 layers values are "
                "~0.5^100 ≈ 8e-31 and a mean of 100 of them ~1e-31."
            )
        ratio = ""
        observed, theory = r.get("std"), r.get("theory_std")
        if observed is not None and theory:
            ratio = f" ({float(observed) / float(theory):.2f} of it)"
        return (
            "The 0.0 is float32 underflow inside reduce_std, not vanished activations: it "
            "squares deviations of ~1e-30 into ~1e-60, below float32's smallest subnormal "
            "(1.4e-45), so the variance rounds to 0. The activations themselves are ~1e-30: "
            "initsweep computes the statistics in float64 from the float32 values, and "
            f"{int(r['n_collapsed'])} of {int(r['n_trials'])} trials collapsed to exactly 0 "
            "(theory puts that collapse near layer 125). E[std] is below theory's "
            f"sqrt(E[std²]){ratio} by Jensen: after 100 layers of width 100 the per-pass "
            "mean_sq is ~log-normal with Var[log] ≈ 100·2/100 = 2, and E[sqrt] ≈ "
            "exp(-2/8) = 0.78 of sqrt(E)."
        )
    if cell == 158:
        if statistic == "mean":
            return agree + "E[mean] = 0 by symmetry."
        return (
            agree + "The notebook's 'variance = num_layers' should read fan_in: y = x W sums "
            "512 products of unit-variance terms, so Var(y) = 512 and sqrt(512) = 22.627 is "
            "sqrt(E[y²]). reduce_std (ddof=0 over 512 units) has E[std²] = 512·(1 - 1/512) = 511 "
            "(theory 22.605), and E[std] sits a further ~0.02 below by Jensen."
        )
    if cell == 159:
        if statistic == "mean":
            return agree + "E[mean] = 0 by symmetry."
        return (
            agree + "Scaling N(0, 1) by sqrt(1/512) = 1/sqrt(fan_in) (LeCun's rule; 'layers' "
            "in the notebook's text is fan_in) gives Var(y) = 1; E[std²] = 1 - 1/512."
        )
    if cell == 160:
        if statistic == "mean":
            return agree + "tanh is odd: E[mean] = 0."
        return (
            agree + "tanh of a unit-variance Gaussian: E[tanh(z)²] = 0.394, std ≈ 0.628; the "
            "activation shrinks the signal."
        )
    common = (
        "U[0,1)·c is not centred (entry mean c/2), so every unit of a pass shares the common "
        "mode (c/2)·Σx_i, which swings the pass's mean and compresses its spread. "
    )
    jensen = (
        "Theory is sqrt(E[std²]), above E[std] by Jensen: the common mode makes a pass's std "
        "vary a lot. "
    )
    if cell in (161, 162):
        glorot = (
            "The notebook's 'Xavier' is not Glorot's: glorot_uniform is the symmetric, centred "
            "U(-limit, limit) with limit = sqrt(6/(fan_in + fan_out)) (Var = 1/512 here, which "
            "gives cell 160's numbers: mean 0, std ≈ 0.63). "
        )
        if statistic == "mean":
            return (
                agree + "tanh is odd and the common mode symmetric: E[mean] = 0, but the "
                "common mode makes one pass's mean swing widely (see the std row)."
            )
        return agree + common + jensen + glorot
    if statistic == "mean":
        return (
            agree + common + "relu keeps the positive part: E[mean] = sqrt(q/2π) with "
            f"q = 512·E[w²] = 2/3. {int(r['n_collapsed'])} of {int(r['n_trials'])} trials were "
            "exactly 0 (the common mode made every unit negative)."
        )
    return agree + common + jensen + "He's sqrt(2/fan_in) rule assumes centred weights."


def _moment_rows(cell: NotebookCell, layers: Mapping[tuple[int, str], Record]) -> list[Any]:
    r = layers.get((cell.layer, "activation"))
    if r is None:
        return []
    # For linear networks h = z: the preactivation's prediction of std is the exact one at layer 1
    # (the activation's is the pooled approximation sqrt(E[mean_sq] - E[mean]^2)).
    pre = layers.get((cell.layer, "preactivation"))
    exact_std = r.get("theory_std")
    config = config_of(r)
    linear = config is not None and config.activation.name == "linear"
    if linear and pre is not None and pre.get("theory_std"):
        exact_std = pre["theory_std"]
    rows = []
    n = int(r["n_finite"])
    for statistic, printed in (("mean", cell.mean), ("std", cell.std)):
        observed, se = r[statistic], r[f"{statistic}_se"]
        theory = _theory_mean(r) if statistic == "mean" else exact_std
        z = None
        if printed is not None and observed is not None and se is not None:
            z = _z(printed, cell.passes, float(observed), float(se), n)
        if cell.cell == 157 and statistic == "std":
            z = None  # float32 underflow in the notebook: no sampling comparison
        label = "sqrt(E[std²])" if statistic == "std" else "E[mean]"
        rows.append(
            _row(
                cell,
                f"{statistic} (layer {cell.layer})",
                f"{number(printed)} ({cell.passes} pass{'es' if cell.passes > 1 else ''})",
                pm(observed, se),
                f"{number(theory, 5)} ({label})" if theory is not None else "—",
                _explain(cell.cell, statistic, z, r),
                notebook_value=printed,
                observed=observed,
                observed_se=se,
                theory_value=theory,
                z=z,
            )
        )
    return rows


def reproduction_rows(records: Iterable[Record]) -> list[dict[str, Any]]:
    """One row per printed notebook number whose cell the records' `label` axis names.

    Records come from `scheduler.query.theory_records` (the theory column is "—" without
    the theory fields). Keys: cell, statistic, layer, notebook_passes, notebook (text),
    initsweep (text), theory (text), explanation, and the numbers notebook_value, observed,
    observed_se, theory_value, z (notebook vs initsweep in combined SE); cell 156 adds
    first_nonfinite (layer -> fraction of trials, layers 37-40).
    """
    by_cell = _by_cell(records)
    rows: list[dict[str, Any]] = []
    for cell in NOTEBOOK:
        layers = by_cell.get(cell.cell)
        if not layers:
            continue
        if cell.cell in (155, 156):
            rows += _exploded_rows(cell, layers)
        else:
            rows += _moment_rows(cell, layers)
    return rows


def render_markdown(rows: Iterable[Mapping[str, Any]]) -> str:
    """The rows as a GitHub-flavoured Markdown table."""
    head = (
        "| cell | statistic | notebook | initsweep (± SE) | theory | z | explanation |\n"
        "|---|---|---|---|---|---|---|\n"
    )

    def cell(text: Any) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| "
        + " | ".join(
            cell(x)
            for x in (
                r["cell"],
                r["statistic"],
                r["notebook"],
                r["initsweep"],
                r["theory"],
                "—" if r.get("z") is None else f"{r['z']:+.1f}",
                r["explanation"],
            )
        )
        + " |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def reproduction_markdown(records: Iterable[Record]) -> str:
    """The notebook table of `records` (see `reproduction_rows`) as Markdown."""
    return render_markdown(reproduction_rows(records))
