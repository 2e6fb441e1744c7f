"""What a validated sweep expands to, before anything is written: configurations and chunks."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from worker.contract import SimConfig


@dataclass(frozen=True)
class ChunkPlan:
    """Trials `[trial_start, trial_start + n_trials)` of a configuration, chunk `chunk_index`."""

    chunk_index: int
    trial_start: int
    n_trials: int


@dataclass(frozen=True)
class ConfigPlan:
    """A configuration to run under a seed, with its chunks; `axes` are the user's axis values."""

    config: SimConfig
    seed: int
    seed_key: int
    trials: int
    chunk_trials: int
    chunks: tuple[ChunkPlan, ...]
    queue: str = "cpu"
    axes: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def config_hash(self) -> str:
        return self.config.config_hash

    @property
    def run_key(self) -> str:
        """Content address of the results: same config, seed, trials and chunking = same rows."""
        text = f"{self.config_hash}:{self.seed}:{self.trials}:{self.chunk_trials}"
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class SweepPlan:
    """A whole sweep: its spec (original YAML and normalised JSON) and configurations."""

    name: str
    seed: int
    spec_yaml: str
    spec_json: dict[str, Any] = field(hash=False, compare=False)
    configs: tuple[ConfigPlan, ...] = ()
    memory_budget_bytes: int = 1 << 30

    @property
    def n_chunks(self) -> int:
        return sum(len(c.chunks) for c in self.configs)

    @property
    def n_trials(self) -> int:
        return sum(c.trials for c in self.configs)
