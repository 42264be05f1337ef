"""Weight-spectrum diagnostics between checkpoints, and the spectral repairs (arXiv 2508.16546).

    python -m chord.diagnose SFT_PEAK SFT_END RL_END --out diag/ [--k-frac 0.01 0.1]
        [--matrices q,k,v,o,gate,up,down] [--embeddings] [--device cuda] [--exact-rank 1024]
    python -m chord.diagnose repair uv-merge --target SFT_END --donor SFT_PEAK --top-frac 0.2 --out fixed/
        [--tail-frac 0] [--mode direction|vector] [--snap]
    python -m chord.diagnose repair layer-reset --target SFT_END --donor SFT_PEAK --layers 0:10 --out fixed/

Each checkpoint is a save_pretrained folder or a chord run folder with a final/ (or best/) export.
Consecutive checkpoints are compared (the first is the reference), plus first vs last when there are
three or more. Writes summary.md (per matrix type: drift, principal angles against a random-subspace
baseline), table.csv / table.json (per layer x matrix x k) and one heatmap PNG per comparison.
Cost: one exact SVD per matrix and checkpoint up to rank --exact-rank, else svdvals plus a randomized
top-k SVD; svdvals of a 3584^2 matrix takes ~53 s on two CPU cores (numpy fp32), so a 7B pair is hours
on CPU: use --device cuda where there is one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chord.spectrum.diagnostics import diagnose
from chord.spectrum.maths import MATRIX_TYPES
from chord.spectrum.model_folder import InputError, ModelFolder
from chord.spectrum.report import write_outputs


def _matrix_list(text: str) -> tuple[str, ...]:
    kinds = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in kinds if x not in MATRIX_TYPES]
    if bad or not kinds:
        raise InputError(
            f"--matrices: unknown type {bad[0] if bad else '(none)'}; choose from {','.join(MATRIX_TYPES)}"
        )
    return kinds


def _diagnose_cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m chord.diagnose",
        description=__doc__.splitlines()[0],
        epilog="repairs: python -m chord.diagnose repair {uv-merge,layer-reset} -h",
    )
    p.add_argument("checkpoints", nargs="+", help="two or more model folders or chord run folders, in order")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--k-frac", type=float, nargs="+", default=[0.01, 0.1], help="top-k as fractions of rank")
    p.add_argument("--matrices", default=",".join(MATRIX_TYPES))
    p.add_argument("--embeddings", action="store_true", help="also embed_tokens and lm_head (large, slow)")
    p.add_argument("--exact-rank", type=int, default=1024, help="exact SVD up to this rank, else randomized")
    p.add_argument("--baseline-samples", type=int, default=8)
    p.add_argument("--no-snap", action="store_true", help="keep k = ceil(frac * rank) inside clusters")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    if len(a.checkpoints) < 2:
        raise InputError("need at least two checkpoints to compare")
    if not all(0 < f <= 1 for f in a.k_frac):
        raise InputError(f"--k-frac values must lie in (0, 1], got {a.k_frac}")
    k_fracs = tuple(a.k_frac)
    if a.baseline_samples < 1 or a.exact_rank < 0:
        raise InputError("--baseline-samples must be >= 1 and --exact-rank >= 0")
    matrices = _matrix_list(a.matrices)
    labels, pairs, rows = diagnose(
        a.checkpoints,
        k_fracs,
        matrices,
        a.embeddings,
        exact_rank=a.exact_rank,
        baseline_samples=a.baseline_samples,
        snap=not a.no_snap,
        device=a.device,
    )
    write_outputs(a.out, labels, pairs, rows, k_fracs)
    print(f"chord.diagnose: {len(rows)} rows -> {a.out}/summary.md, table.csv, table.json", file=sys.stderr)
    return 0


def _repair_cli(argv: list[str]) -> int:
    from chord.spectrum.repairs import layer_reset, parse_layers, uv_merge

    p = argparse.ArgumentParser(prog="python -m chord.diagnose repair")
    sub = p.add_subparsers(dest="kind", required=True)
    for kind in ("uv-merge", "layer-reset"):
        s = sub.add_parser(kind)
        s.add_argument("--target", required=True, help="the model to repair (e.g. SFT end)")
        s.add_argument(
            "--donor", required=True, help="where restored weights come from (e.g. the SFT OOD peak)"
        )
        s.add_argument(
            "--out", type=Path, required=True, help="new model folder (must not exist or be empty)"
        )
        s.add_argument("--embeddings", action="store_true", help="also embed_tokens and lm_head")
    um, lr = sub.choices["uv-merge"], sub.choices["layer-reset"]
    um.add_argument("--top-frac", type=float, default=0.0)
    um.add_argument("--tail-frac", type=float, default=0.0)
    um.add_argument(
        "--mode",
        choices=("direction", "vector"),
        default="direction",
        help="direction: donor directions, target singular values; vector: donor values too",
    )
    um.add_argument("--matrices", default=",".join(MATRIX_TYPES))
    um.add_argument("--snap", action="store_true", help="move cuts to the largest nearby spectral gap")
    um.add_argument("--device", default="cpu")
    lr.add_argument("--layers", required=True, help="0:10 (slice), 0-9 (inclusive), 0,3,5, or 0:0.25 (depth)")
    lr.add_argument("--include-1d", action="store_true", help="also those layers' norm weights and biases")
    a = p.parse_args(argv)
    if a.kind == "uv-merge":
        if not (0 <= a.top_frac <= 1 and 0 <= a.tail_frac <= 1):
            raise InputError("--top-frac and --tail-frac must lie in [0, 1]")
        matrices = _matrix_list(a.matrices)
        out = uv_merge(
            a.target,
            a.donor,
            a.out,
            a.top_frac,
            tail_frac=a.tail_frac,
            mode=a.mode,
            matrices=matrices,
            embeddings=a.embeddings,
            snap=a.snap,
            device=a.device,
        )
    else:
        layers = parse_layers(a.layers, ModelFolder(a.target).num_layers())
        out = layer_reset(a.target, a.donor, a.out, layers, a.embeddings, a.include_1d)
    print(f"chord.diagnose: wrote {out}; evaluate it with python -m chord.eval", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    from safetensors import SafetensorError

    argv = sys.argv[1:] if argv is None else argv
    try:
        return _repair_cli(argv[1:]) if argv[:1] == ["repair"] else _diagnose_cli(argv)
    except (InputError, OSError, SafetensorError, json.JSONDecodeError, KeyError) as e:
        msg = " ".join(str(e).split())
        print(f"chord.diagnose: {msg or type(e).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
