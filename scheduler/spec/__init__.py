"""Sweep specs, layered one way: `model` (vocabulary, frozen values) <- `values` (one value at a
time, error wording) <- `expand` (configurations, content hash, random draws) <- `target` (the
precision target section) <- `parse` (YAML, sections; the entry points). Modules inside the package never import this `__init__`."""

from __future__ import annotations

from scheduler.spec.expand import ExpandedConfig, ExpandedSweep, expand, expand_located
from scheduler.spec.model import MAX_CONFIGS, AxisValue, RandomAxis, RandomSpec, SweepSpec
from scheduler.spec.parse import load_spec, parse_spec, spec_from_json
from scheduler.spec.values import parse_byte_size

__all__ = [
    "MAX_CONFIGS",
    "AxisValue",
    "ExpandedConfig",
    "ExpandedSweep",
    "RandomAxis",
    "RandomSpec",
    "SweepSpec",
    "expand",
    "expand_located",
    "load_spec",
    "parse_byte_size",
    "parse_spec",
    "spec_from_json",
]
