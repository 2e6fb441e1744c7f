"""Counter-based seeds: the randomness of a trial is a pure function of content, never of order.

A configuration's Philox key is derived from (sweep seed, config_hash) with numpy's
`SeedSequence` (O'Neill 2015 hashing of the entropy words), so two sweeps that share a seed and a
configuration draw the same trials, and two different configurations draw independent ones.
Inside the core, trial t of that configuration uses Philox counters at offset t (see
`worker.sim.rng`), so a chunk `[trial_start, trial_start + n)` gives the same bits whichever
chunk size, sub-batch size, process or host computes it.
"""

from __future__ import annotations

import numpy as np

KEY_BITS = 63  # fits a signed BIGINT column and a JSON number without loss in every client


def _hash_words(config_hash: str) -> list[int]:
    """The first 128 bits of a hex content hash as four uint32 entropy words."""
    return [int(config_hash[i : i + 8], 16) for i in range(0, 32, 8)]


def config_seed_key(sweep_seed: int, config_hash: str) -> int:
    """Philox key (63-bit non-negative int) of every trial of a configuration under a seed."""
    if sweep_seed < 0:
        raise ValueError(f"seed: expected a non-negative integer. Received: {sweep_seed}")
    ss = np.random.SeedSequence(entropy=[sweep_seed, *_hash_words(config_hash)])
    word = int(ss.generate_state(1, dtype=np.uint64)[0])
    return word & ((1 << KEY_BITS) - 1)
