"""Weight repairs that write a new save_pretrained model (arXiv 2508.16546, Sec. "restoring" experiments).

The paper restores out-of-distribution skill lost to long SFT without RL by giving a later checkpoint
(target, e.g. SFT end) an earlier one's (donor, e.g. the SFT checkpoint with the best OOD score)
  - singular directions for the top and/or bottom fraction of each matrix's spectrum (UV merge), or
  - decoder layers outright (layer reset; "first 25% of layers" brought back 70-80%, per the abstract).
Both stream shard by shard: untouched shards are copied byte for byte, others rewritten one shard in
memory at a time, in the target's dtype. The result is an ordinary model folder: evaluate it with
`python -m chord.eval` (recovery % is left to the caller, who holds the OOD scores).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from chord.spectrum.maths import LAYER_ID, MATRIX_TYPES, compute_dtype, select_matrices, snap_k
from chord.spectrum.model_folder import InputError, ModelFolder, check_compatible

REPORT = "chord_repair.json"
_EMBEDDING = re.compile(r"(?:^|\.)(?:embed_tokens|lm_head)\.weight$")
SVD = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def merge_bands(t: SVD, d: SVD, kt: int, kb: int, mode: str) -> tuple[torch.Tensor, dict[str, float]]:
    """U diag(s) Vh with the donor's top-kt and bottom-kb singular directions (and, for mode "vector", the
    donor's singular values there too; "direction" keeps the target's values) and the target's middle band.

    The merged bases are not orthonormal (columns from two SVDs): their defects are returned.
    """
    (ut, st, vht), (ud, sd, vhd) = t, d
    r = st.numel()
    mid, tail = slice(kt, r - kb), slice(r - kb, r)
    u = torch.cat([ud[:, :kt], ut[:, mid], ud[:, tail]], dim=1)
    vh = torch.cat([vhd[:kt], vht[mid], vhd[tail]], dim=0)
    s = torch.cat([sd[:kt], st[mid], sd[tail]]) if mode == "vector" else st
    eye = torch.eye(r, dtype=u.dtype, device=u.device)
    defects = {
        "u_orth_defect": float(torch.linalg.norm(u.mT @ u - eye)),
        "vh_orth_defect": float(torch.linalg.norm(vh @ vh.mT - eye)),
    }
    return (u * s) @ vh, defects


def uv_merge_matrix(
    target: torch.Tensor,
    donor: torch.Tensor,
    top_frac: float,
    tail_frac: float = 0.0,
    mode: str = "direction",
    snap: bool = False,
    device: str = "cpu",
) -> tuple[torch.Tensor, dict[str, float]]:
    """One matrix of the UV merge; kt = round(top_frac * r), kb = round(tail_frac * r), r = min(shape).

    kt = kb = 0 returns the target itself; kt + kb = r returns the donor (both modes, as the official
    scripts do: a whole-spectrum merge is a copy). `snap` moves the cuts to the largest nearby spectral gap.
    """
    if mode not in ("direction", "vector"):
        raise InputError(f"uv-merge mode must be 'direction' or 'vector', not {mode!r}")
    if target.shape != donor.shape:
        raise InputError(
            f"uv-merge: shapes differ, target {tuple(target.shape)} vs donor {tuple(donor.shape)}"
        )
    r = min(target.shape)
    kt = min(round(top_frac * r), r)
    kb = min(round(tail_frac * r), r - kt)
    info = {"rank": r, "k_top": kt, "k_tail": kb}
    if kt == kb == 0:
        return target, info
    if kt + kb == r:
        return donor.to(target.dtype), info
    dt = compute_dtype(target)
    tw = target.to(device, dt)
    t = torch.linalg.svd(tw, full_matrices=False)
    d = torch.linalg.svd(donor.to(device, dt), full_matrices=False)
    if snap:
        kt = snap_k(t.S, kt) if kt else 0
        kb = min(r - snap_k(t.S, r - kb), r - kt) if kb else 0
        info |= {"k_top": kt, "k_tail": kb}
    merged, defects = merge_bands(tuple(t), tuple(d), kt, kb, mode)
    rel = float(torch.linalg.norm(merged - tw) / torch.linalg.norm(tw))
    return merged.to("cpu", target.dtype), info | defects | {"rel_change": rel}


def _rewrite(
    target: ModelFolder,
    out_dir: Path,
    change: Callable[[str, torch.Tensor], torch.Tensor],
    changed: set[str],
    report: dict,
    progress: bool = True,
) -> Path:
    """Write target with `change` applied to the tensors in `changed`; everything else copied through."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise InputError(f"{out_dir}: exists and is not empty; choose a new output folder")
    tmp = out_dir.parent / f".{out_dir.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in target.path.iterdir():  # config, tokenizer, generation config, index: copied as they are
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copy2(f, tmp / f.name)
    bar = tqdm(total=len(changed), desc="repair", disable=not progress)
    try:
        for shard in target.shards():
            names = [n for n, f in target.files.items() if f == shard]
            if not changed.intersection(names):
                shutil.copy2(target.path / shard, tmp / shard)
                continue
            tensors = {}
            with safe_open(str(target.path / shard), framework="pt") as f:  # one shard in memory at a time
                meta = f.metadata() or {"format": "pt"}
                for name in names:
                    w = f.get_tensor(name)
                    tensors[name] = change(name, w) if name in changed else w
                    bar.update(name in changed)
            save_file({n: t.contiguous() for n, t in tensors.items()}, str(tmp / shard), metadata=meta)
            del tensors
        (tmp / REPORT).write_text(json.dumps(report, indent=1))
    except BaseException:  # no half-written folder left behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        bar.close()
    if out_dir.exists():
        out_dir.rmdir()
    os.replace(tmp, out_dir)
    return out_dir


def uv_merge(
    target: str | Path,
    donor: str | Path,
    out_dir: str | Path,
    top_frac: float,
    tail_frac: float = 0.0,
    mode: str = "direction",
    matrices: tuple[str, ...] = MATRIX_TYPES,
    embeddings: bool = False,
    snap: bool = False,
    device: str = "cpu",
    progress: bool = True,
) -> Path:
    """UV merge of every selected matrix (default the seven decoder projections); a new model folder."""
    if mode not in ("direction", "vector") or not (0 <= top_frac <= 1 and 0 <= tail_frac <= 1):
        raise InputError(
            f"uv-merge: mode {mode!r} (direction | vector), fractions {top_frac}, {tail_frac} in [0, 1]"
        )
    t, d = ModelFolder(target), ModelFolder(donor)
    names = select_matrices(t.names(), matrices, embeddings)
    check_compatible([t, d], names)
    per_matrix: dict[str, dict] = {}

    def change(name: str, w: torch.Tensor) -> torch.Tensor:
        merged, per_matrix[name] = uv_merge_matrix(w, d.tensor(name), top_frac, tail_frac, mode, snap, device)
        return merged

    report = {
        "repair": "uv_merge",
        "target": str(t.path),
        "donor": str(d.path),
        "top_frac": top_frac,
        "tail_frac": tail_frac,
        "mode": mode,
        "matrices": list(matrices),
        "embeddings": embeddings,
        "snap": snap,
        "per_matrix": per_matrix,
    }  # filled in while writing, saved last
    return _rewrite(t, Path(out_dir), change, set(names), report, progress)


def parse_layers(spec: str, num_layers: int) -> list[int]:
    """'0:10' (Python slice, layers 0..9), '0-9' (inclusive), '0,3,5', or depth fractions '0:0.25'."""
    spec = spec.strip()
    try:
        if not spec:
            return []
        if ":" in spec:
            a, b = spec.split(":")
            if "." in a or "." in b:  # fractions of depth: the first 25% of 40 layers = 0:10
                lo, hi = round(float(a or 0) * num_layers), round(float(b or 1) * num_layers)
            else:
                lo, hi = int(a or 0), int(b) if b else num_layers
            layers = list(range(lo, hi))
        elif "-" in spec:
            a, b = spec.split("-")
            layers = list(range(int(a), int(b) + 1))
        else:
            layers = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise InputError(
            f"--layers {spec!r}: expected i:j, i-j, a comma list or fractions like 0:0.25"
        ) from None
    bad = [i for i in layers if not 0 <= i < num_layers]
    if bad:
        raise InputError(f"--layers {spec!r}: layer {bad[0]} outside 0..{num_layers - 1}")
    return sorted(set(layers))


def layer_reset(
    target: str | Path,
    donor: str | Path,
    out_dir: str | Path,
    layers: list[int],
    include_embeddings: bool = False,
    include_1d: bool = False,
    progress: bool = True,
) -> Path:
    """Copy the donor's 2-D weights of decoder `layers` into the target (the official shallow-layer reset).

    1-D tensors of those layers (norm weights, q/k/v biases) stay the target's unless `include_1d`;
    embed_tokens / lm_head move only with `include_embeddings` (the official Llama script always moved them).
    """
    t, d = ModelFolder(target), ModelFolder(donor)
    wanted = set(layers)
    moved = set()
    for name in t.names():
        m = LAYER_ID.search(name)
        in_layer = m is not None and int(m.group(1)) in wanted and (include_1d or len(t.shape(name)) == 2)
        if in_layer or (include_embeddings and _EMBEDDING.search(name)):
            moved.add(name)
    check_compatible([t, d], sorted(moved))
    report = {
        "repair": "layer_reset",
        "target": str(t.path),
        "donor": str(d.path),
        "layers": sorted(wanted),
        "include_embeddings": include_embeddings,
        "include_1d": include_1d,
        "moved": sorted(moved),
    }
    return _rewrite(t, Path(out_dir), lambda name, w: d.tensor(name).to(w.dtype), moved, report, progress)
