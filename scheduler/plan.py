"""What a validated sweep expands to, before anything is written: configurations and chunks."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from worker.contract import SimConfig
from worker.target import Target

RUN_KEY_VERSION = "v2"  # keys before it hashed trials and chunk_trials too (migration 0006)


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
    target: Target | None = None

    @property
    def config_hash(self) -> str:
        return self.config.config_hash

    @property
    def run_key(self) -> str:
        """Content address of the results: same config, seed (and target) = same rows, whatever
        the trials and chunking (more trials grow the configuration: `scheduler.growth`)."""
        return run_key(self.config_hash, self.seed, self.target)


def run_key(config_hash: str, seed: int, target: Target | None = None) -> str:
    """sha256 of `v2:<config_hash>:<seed>`, with `:target=<canonical JSON>` when targeted."""
    text = f"{RUN_KEY_VERSION}:{config_hash}:{seed}"
    if target is not None:
        text += f":target={target.canonical_json()}"
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

    @property
    def target(self) -> Target | None:
        """The precision target of its configurations (one per spec), if any."""
        return self.configs[0].target if self.configs else None
