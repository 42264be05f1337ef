"""Compare checkpoints matrix by matrix: singular-value drift and subspace rotation (arXiv 2508.16546).

One matrix is streamed from every checkpoint at a time; each checkpoint's SVD of it is done once and
shared by the comparisons it is in (consecutive pairs, plus first vs last). Driven by `python -m chord.diagnose`.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from chord.spectrum.maths import (
    MATRIX_TYPES,
    compare,
    select_matrices,
    singular_value_drift,
    snap_k,
    spectrum,
    top_k,
)
from chord.spectrum.model_folder import InputError, ModelFolder, check_compatible


def _labels(folders: list[ModelFolder]) -> list[str]:
    names = [
        f"{f.path.parent.name}/{f.path.name}" if f.path.name in ("final", "best") else f.path.name
        for f in folders
    ]
    return [n if names.count(n) == 1 else f"{n}#{i}" for i, n in enumerate(names)]


def diagnose(
    paths: list[str | Path],
    k_fracs: tuple[float, ...] = (0.01, 0.1),
    matrices: tuple[str, ...] = MATRIX_TYPES,
    embeddings: bool = False,
    exact_rank: int = 1024,
    baseline_samples: int = 8,
    snap: bool = True,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[list[str], list[tuple[int, int]], list[dict]]:
    """(labels, comparisons as index pairs, one row per comparison x matrix x k). Streams one matrix from
    every checkpoint at a time and does one SVD per checkpoint, shared by the comparisons it is in."""
    folders = [ModelFolder(p) for p in paths]
    named = select_matrices(folders[0].names(), matrices, embeddings)
    if not named:
        raise InputError(f"{folders[0].path}: no matrices of types {','.join(matrices)} (Llama/Qwen2 names)")
    check_compatible(folders, named)
    n = len(folders)
    pairs = [(i, i + 1) for i in range(n - 1)] + ([(0, n - 1)] if n > 2 else [])
    labels, rows = _labels(folders), []
    for name, (layer, kind) in tqdm(named.items(), desc="diagnose", unit="matrix", disable=not progress):
        ws = [f.tensor(name).to(device) for f in folders]  # one matrix per checkpoint in memory
        r = min(ws[0].shape)
        ks = [top_k(r, frac) for frac in k_fracs]
        k_cap = min(r, max(ks) + max(1, round(0.1 * max(ks))))  # room for snap_k's window
        sps = [spectrum(w, k_cap, exact_rank) for w in ws]
        for i, j in pairs:
            drift = singular_value_drift(sps[i].s, sps[j].s)
            for frac, k in zip(k_fracs, ks):
                k = min(snap_k(sps[i].s, k), k_cap) if snap else k  # the cut on the reference's spectrum
                rows.append(
                    {
                        "comparison": f"{labels[i]} -> {labels[j]}",
                        "ref": labels[i],
                        "target": labels[j],
                        "name": name,
                        "layer": layer,
                        "matrix": kind,
                        "out": ws[0].shape[0],
                        "in": ws[0].shape[1],
                        "k_frac": frac,
                        "k": k,
                        "svd": "exact" if sps[i].exact and sps[j].exact else "randomized",
                    }
                    | drift
                    | compare(ws[i], ws[j], sps[i], sps[j], k, baseline_samples)
                )
        del ws, sps
    return labels, pairs, rows
