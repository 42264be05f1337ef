"""Checkpoint files as data, never code: RNG states in JSON, sha256 content hashes of every file.

chord's own files are read without unpickling anything: each rank's RNG state is `rng_rank<r>.json`
(integers, floats and base64 bytes). Checkpoints written before this format keep `rng_rank<r>.pt`,
read with `torch.load(weights_only=True)` and only numpy's array constructors allowed. DeepSpeed
unpickles its own files (`load_checkpoint`, `zero_to_fp32`); the content hashes recorded at save
time, checked before any of them is opened, are what keeps a damaged or swapped file out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chord.config import ConfigError

HASH_BUFFER = 8 << 20
# Measured on this 2-core VM (sha_ni, another job running): 0.9-1.4 s per GiB with 64 KiB-8 MiB buffers.


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    buf = memoryview(bytearray(HASH_BUFFER))
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(buf[:n])
    return digest.hexdigest()


def hash_files(root: Path, names: list[str], rank: int, world: int) -> dict[str, str]:
    """Collective: rank r hashes every world-th file (a shared filesystem), rank 0 gets them all."""
    mine = {n: sha256_file(root / n) for n in names[rank::world]}
    if world == 1:
        return mine
    import torch.distributed as dist

    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, mine)
    return {n: h for part in parts for n, h in part.items()}


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode()


def _tensor(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)


def rng_state() -> dict[str, Any]:
    """This process's python, numpy, torch (and CUDA) generator states as JSON-able data."""
    version, words, gauss = random.getstate()
    key, state, pos, has_gauss, cached = np.random.get_state()
    out = {"python": {"version": version, "state": list(words), "gauss": gauss},
           "numpy": {"key": key, "state": state.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                     "cached_gaussian": float(cached)},
           "torch": _b64(torch.get_rng_state())}
    if torch.cuda.is_available():
        out["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    p, n = state["python"], state["numpy"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    np.random.set_state((n["key"], np.array(n["state"], dtype=np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(_tensor(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_tensor(s) for s in state["cuda"]])


def restore_rng(path: Path) -> None:
    """Set this process's generators from rng_rank<r>.json (read as data: JSON, never a pickle)."""
    try:
        set_rng_state(json.loads(path.read_text()))
    except Exception as e:  # UnpicklingError (a file that wants to run code), KeyError, ValueError...
        first = (str(e).splitlines() or [""])[0][:200]
        raise ConfigError(f"checkpoint file {path} is not a valid RNG state ({type(e).__name__}: {first})") from None
