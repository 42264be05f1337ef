"""Diagnostics output: summary.md (per matrix type), table.csv / table.json (per layer x matrix x k) and
one layer x matrix-type heatmap PNG per comparison (matplotlib, Agg backend)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from chord.spectrum.maths import EMBEDDING_TYPES, MATRIX_TYPES

READING = (
    "Angles in degrees, mean over the k principal angles, then over layers; `random` is the same "
    "statistic for random k-dim subspaces of the same dimension (R^out for U, R^in for V). Drift = "
    "mean |s_tgt - s_ref| / s_ref. The paper's regime (arXiv 2508.16546): drift <= ~1% while angles sit "
    "well above the noise floor (adjacent checkpoints, or two seeds) yet below random. Angles at random "
    "level: unrelated subspaces or k too large; no finding."
)


def _kinds(rows: list[dict]) -> list[str]:
    order = MATRIX_TYPES + EMBEDDING_TYPES
    return sorted({r["matrix"] for r in rows}, key=order.index)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def write_summary(
    out: Path,
    labels: list[str],
    pairs: list[tuple[int, int]],
    rows: list[dict],
    k_fracs: tuple[float, ...],
    pngs: list[str],
) -> None:
    lines = [
        "# Weight-spectrum diagnostics",
        "",
        "Checkpoints: " + ", ".join(f"`{x}`" for x in labels),
        "",
        READING,
        "",
    ]
    for (i, j), png in zip(pairs, pngs):
        cmp = f"{labels[i]} -> {labels[j]}"
        lines += [f"## {cmp}", "", f"![heatmap]({png})", ""]
        for frac in k_fracs:
            sel = [r for r in rows if r["comparison"] == cmp and r["k_frac"] == frac]
            lines += [
                f"k = {frac:g} of rank",
                "",
                "| matrix | count | drift mean % | drift max % | U angle | U random | V angle | V random "
                "| d_norm U | d_norm V | diag / rot / out |",
                "|---" * 11 + "|",
            ]
            for kind in _kinds(sel):
                g = [r for r in sel if r["matrix"] == kind]

                def m(key: str, g: list[dict] = g) -> float:
                    return _mean([r[key] for r in g])

                lines.append(
                    f"| {kind} | {len(g)} | {100 * m('drift_mean'):.3f} | {100 * m('drift_max'):.3f} "
                    f"| {m('angle_u_mean'):.2f} | {m('base_u_mean'):.2f} | {m('angle_v_mean'):.2f} "
                    f"| {m('base_v_mean'):.2f} | {m('angle_u_d_norm'):.3f} | {m('angle_v_d_norm'):.3f} "
                    f"| {m('diag_ratio'):.2f} / {m('rot_ratio'):.2f} / {m('out_ratio'):.2f} |"
                )
            lines.append("")
    (out / "summary.md").write_text("\n".join(lines))


def write_heatmap(path: Path, title: str, rows: list[dict], k_fracs: tuple[float, ...]) -> None:
    """Layer x matrix type: drift (%), and per k the mean U / V angle as a share of the random baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["layer"] is not None]  # embed/head have no layer: table only
    layers = sorted({r["layer"] for r in rows})
    kinds = _kinds(rows)
    panels = [("drift_mean", k_fracs[0], "drift mean %", 100.0)]
    panels += [
        (f"angle_{s}_mean", f, f"{s.upper()} angle / random, k={f:g}", 1.0) for f in k_fracs for s in "uv"
    ]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(1.0 + 2.4 * len(panels), 2.0 + 0.22 * len(layers)), squeeze=False
    )
    for ax, (key, frac, name, scale) in zip(axes[0], panels):
        grid = torch.full((len(layers), len(kinds)), float("nan"))
        for r in rows:
            if r["k_frac"] == frac:
                base = r[key.replace("angle", "base")] if key.startswith("angle") else 1.0
                grid[layers.index(r["layer"]), kinds.index(r["matrix"])] = scale * r[key] / base
        im = ax.imshow(grid.numpy(), aspect="auto", cmap="viridis", origin="lower")
        ax.set(title=name, xticks=range(len(kinds)), xticklabels=kinds, xlabel="matrix", ylabel="layer")
        ax.tick_params(axis="x", labelrotation=90)
        ax.set_yticks(range(len(layers)), labels=[str(x) for x in layers])
        fig.colorbar(im, ax=ax, fraction=0.05)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(
    out: Path, labels: list[str], pairs: list[tuple[int, int]], rows: list[dict], k_fracs: tuple[float, ...]
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    meta = {
        "checkpoints": labels,
        "comparisons": [f"{labels[i]} -> {labels[j]}" for i, j in pairs],
        "k_fracs": list(k_fracs),
        "paper": "arXiv 2508.16546",
        "rows": rows,
    }
    (out / "table.json").write_text(json.dumps(meta, indent=1))
    pngs = []
    for i, j in pairs:
        pngs.append(f"heatmap_{i}-{j}.png")
        sel = [r for r in rows if r["comparison"] == f"{labels[i]} -> {labels[j]}"]
        write_heatmap(out / pngs[-1], f"{labels[i]} -> {labels[j]}", sel, k_fracs)
    write_summary(out, labels, pairs, rows, k_fracs, pngs)
