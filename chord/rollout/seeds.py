"""Per-request sampling seeds: one function for every engine, so a (run seed, step, prompt slot) samples
the same tokens wherever and whenever it is generated (exact resume, placement invariance on CPU).

vLLM seeds sample k of a request with `seed + k` (vllm/v1/engine/parallel_sampling.py), so consecutive
slot seeds would give slot i's sample k + 1 the seed of slot i + 1's sample k: correlated samples across
prompt groups. Each slot therefore owns the K seeds [base + slot * K, base + (slot + 1) * K), and the
step's base comes from a hash, so steps do not share ranges either (up to 2**30 samples a step).
"""

from __future__ import annotations

import hashlib

SEED_SPACE = 2**31  # vLLM 0.34 accepts seeds in [0, 2**32); torch any 64-bit value: stay below both


def request_seed(seed: int, step: int, slot: int, samples: int) -> int:
    """The seed of prompt slot `slot` at `step`; its K samples use this seed + 0 .. K - 1 (vLLM)."""
    base = int.from_bytes(hashlib.blake2b(f"{seed}:{step}".encode(), digest_size=8).digest(), "big") % 2**30
    return (base + slot * samples) % SEED_SPACE
