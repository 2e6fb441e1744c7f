"""Counter-based seeds: the randomness of a trial is a pure function of content, never of order.

A configuration's Philox key is derived from (sweep seed, config_hash) with numpy's
`SeedSequence` (O'Neill 2015 hashing of the entropy words), so two sweeps that share a seed and a
configuration draw the same trials, and two different configurations draw independent ones.
Inside the core, trial t of that configuration uses Philox counters at offset t (see
`worker.sim.rng`), so a chunk `[trial_start, trial_start + n)` gives the same bits whichever
chunk size, sub-batch size, process or host computes it.

`config_seed_keys` runs SeedSequence's mixing (entropy words [seed words..., 4 hash words],
pool of 4 uint32, then `generate_state(1, uint64)`) on uint32 arrays, one column per
configuration: the same words as `np.random.SeedSequence(entropy=...)`, without building one
object per configuration (tests/unit/test_bulk_identity.py pins the two together).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

KEY_BITS = 63  # fits a signed BIGINT column and a JSON number without loss in every client

# numpy.random.SeedSequence's constants (pool of 4 uint32 words)
_POOL = 4
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_MASK32 = 0xFFFFFFFF

U32 = npt.NDArray[np.uint32]


def _hash_words(config_hashes: Sequence[str]) -> U32:
    """The first 128 bits of each hex content hash as four uint32 entropy words (big-endian
    hex digits: word k is int(h[8k : 8k + 8], 16)), one row per hash."""
    prefixes = [h[:32] for h in config_hashes]
    if any(len(p) != 32 for p in prefixes):
        raise ValueError("config_hash: expected at least 32 hex digits")
    raw = bytes.fromhex("".join(prefixes))
    return np.frombuffer(raw, dtype=">u4").astype(np.uint32).reshape(len(prefixes), 4)


def _int_words(n: int) -> list[int]:
    """SeedSequence's uint32 words of a non-negative int: little-endian, [0] for 0."""
    words = [n & _MASK32]
    n >>= 32
    while n:
        words.append(n & _MASK32)
        n >>= 32
    return words


def config_seed_key(sweep_seed: int, config_hash: str) -> int:
    """Philox key (63-bit non-negative int) of every trial of a configuration under a seed."""
    return config_seed_keys(sweep_seed, [config_hash])[0]


def config_seed_keys(sweep_seed: int, config_hashes: Sequence[str]) -> list[int]:
    """`config_seed_key(sweep_seed, h)` for each h, in order (module docstring)."""
    if sweep_seed < 0:
        raise ValueError(f"seed: expected a non-negative integer. Received: {sweep_seed}")
    n = len(config_hashes)
    seed_words = [np.full(n, w, dtype=np.uint32) for w in _int_words(sweep_seed)]
    hashed = _hash_words(config_hashes)
    entropy = [*seed_words, *(hashed[:, k] for k in range(4))]
    state = _generate_state(_mix_entropy(entropy))
    keys = state[0].astype(np.uint64) | (state[1].astype(np.uint64) << np.uint64(32))
    return [int(k) & ((1 << KEY_BITS) - 1) for k in keys.tolist()]


def _mix_entropy(entropy: list[U32]) -> list[U32]:
    """SeedSequence.mix_entropy, elementwise over configurations (uint32 arithmetic wraps)."""
    hash_const = [_INIT_A]

    def hashmix(value: U32) -> U32:
        value = value ^ np.uint32(hash_const[0])
        hash_const[0] = (hash_const[0] * _MULT_A) & _MASK32
        value = value * np.uint32(hash_const[0])
        return value ^ (value >> np.uint32(16))

    def mix(x: U32, y: U32) -> U32:
        result = np.uint32(_MIX_L) * x - np.uint32(_MIX_R) * y
        return result ^ (result >> np.uint32(16))

    zeros = np.zeros_like(entropy[0])
    pool = [hashmix(entropy[i] if i < len(entropy) else zeros) for i in range(_POOL)]
    for i_src in range(_POOL):
        for i_dst in range(_POOL):
            if i_src != i_dst:
                pool[i_dst] = mix(pool[i_dst], hashmix(pool[i_src]))
    for i_src in range(_POOL, len(entropy)):
        for i_dst in range(_POOL):
            pool[i_dst] = mix(pool[i_dst], hashmix(entropy[i_src]))
    return pool


def _generate_state(pool: list[U32]) -> list[U32]:
    """SeedSequence.generate_state(1, uint64) as its two uint32 words (low, high)."""
    hash_const = _INIT_B
    out = []
    for i in range(2):
        value = pool[i % _POOL] ^ np.uint32(hash_const)
        hash_const = (hash_const * _MULT_B) & _MASK32
        value = value * np.uint32(hash_const)
        out.append(value ^ (value >> np.uint32(16)))
    return out
