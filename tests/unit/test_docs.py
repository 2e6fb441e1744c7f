"""The spec and results references in docs/ name every key, axis, scheme, activation and column
the code has (adding one without documenting it fails here)."""

from __future__ import annotations

import re

import pytest

from scheduler.analysis.compare import THEORY_KEYS
from scheduler.analysis.records import config_params, record_row
from scheduler.spec.model import AXES, DISTRIBUTIONS, LABEL_KEY, REQUESTED_SAMPLERS, TOP_KEYS
from tests.conftest import ROOT
from worker.contract import (
    ACTIVATIONS,
    BIAS_SCHEMES,
    DTYPES,
    INIT_SCHEMES,
    QUEUES,
    LayerRecord,
    Scheme,
    SimConfig,
)
from worker.stats import Moments

pytestmark = pytest.mark.unit

SPEC_DOC = (ROOT / "docs" / "spec.md").read_text()
RESULTS_DOC = (ROOT / "docs" / "results.md").read_text()


def _coded(text: str) -> set[str]:
    """Inline `code` spans and the contents of fenced blocks."""
    fenced = re.findall(r"```.*?```", text, flags=re.S)
    inline = re.sub(r"```.*?```", " ", text, flags=re.S)
    return set(re.findall(r"`([^`\n]+)`", inline)) | set(fenced)


def test_spec_reference_names_everything() -> None:
    coded = " ".join(_coded(SPEC_DOC))
    names = [*TOP_KEYS, *AXES, LABEL_KEY, *DISTRIBUTIONS, *REQUESTED_SAMPLERS, *DTYPES, *QUEUES]
    names += [*INIT_SCHEMES, *ACTIVATIONS, *BIAS_SCHEMES]
    names += [p for params in INIT_SCHEMES.values() for p in params]
    names += [p for params in ACTIVATIONS.values() for p in params]
    missing = sorted({n for n in names if not re.search(rf"\b{re.escape(n)}\b", coded)})
    assert missing == []


def test_results_reference_names_every_column() -> None:
    config = SimConfig(init=Scheme("he_normal"), activation=Scheme("relu"), depth=2, width=4,
                       input_dim=4)  # fmt: skip
    m = Moments.of([1.0, 2.0])
    record = LayerRecord(layer=1, quantity="activation", n_trials=2, n_finite=2,
                         n_first_nonfinite=0, n_collapsed=0, mean=m, std=m, mean_sq=m)  # fmt: skip
    columns = ["sweep_id", "config_hash", "complete", *config_params(config), *THEORY_KEYS]
    columns += list(record_row(record))
    documented = " ".join(_coded(RESULTS_DOC))
    missing = sorted({c for c in columns if not re.search(rf"\b{re.escape(c)}\b", documented)})
    assert missing == []
