"""What a finished run shows a person: curves.png (reward, held-out accuracy, mu, entropy) and one summary line.

    from chord.analysis.curves import summary, write_curves
    write_curves("runs/quickstart")  # runs/quickstart/curves.png
    summary("runs/quickstart")       # "held-out accuracy (avg@4): id 31% -> 58%, ood 28% -> 35%; ..."

Read from the run folder (chord.analysis.runs), so a resumed or staged run draws one timeline.
"""

from __future__ import annotations

from pathlib import Path

from chord.analysis.runs import AVG_KEY, Run, load_run, series

PANELS = (  # (title, metrics.jsonl keys); held-out accuracy comes from eval.jsonl
    ("training reward", ("reward/mean",)),
    ("held-out accuracy", ()),
    ("mu (SFT weight)", ("mu",)),
    ("entropy (nats/token)", ("entropy/rollout", "entropy/expert")),
)


def accuracy_keys(run: Run) -> list[str]:
    """Each benchmark's avg@k in eval.jsonl, in the order first seen (e.g. id/avg@4, ood/avg@4)."""
    keys: list[str] = []
    for row in run.evals:
        keys += [k for k in row if AVG_KEY.match(k) and k not in keys]
    return keys


def write_curves(folder: str | Path) -> Path:
    """Draw the run's curves into <folder>/curves.png (a staged run: its stage starts marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = load_run(folder)
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    for ax, (title, keys) in zip(axes.flat, PANELS, strict=True):
        lines = [(k, *series(run.evals, k)) for k in accuracy_keys(run)] if not keys else \
            [(k, *series(run.rows, k)) for k in keys]
        for key, steps, values in lines:
            if steps:
                ax.plot(steps, [100 * v for v in values] if not keys else values, marker="o" if not keys else None,
                        markersize=3, label=key)
        for start, name in run.boundaries:
            ax.axvline(start, color="grey", linestyle=":", linewidth=1)
            ax.annotate(name, (start, 1), xycoords=("data", "axes fraction"), fontsize=7, va="top")
        if keys == ("mu",):
            ax.set_ylim(-0.03, 1.03)  # mu lives in [0, 1]: a constant 0.1 must not fill the panel
        ax.set_title(title + (" (%)" if not keys else ""), fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
        if any(steps for _, steps, _ in lines):
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged in this run", ha="center", va="center", transform=ax.transAxes, fontsize=8)
    fig.suptitle(str(Path(folder)), fontsize=10)
    fig.tight_layout()
    out = Path(folder) / "curves.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def summary(folder: str | Path, tensorboard: bool = True) -> str:
    """One line: held-out accuracy at the first and last evaluation per benchmark, then where to look."""
    run = load_run(folder)
    parts = []
    for key in accuracy_keys(run):
        _, values = series(run.evals, key)
        name, k = AVG_KEY.match(key).groups()  # type: ignore[union-attr]
        parts.append((k, f"{name} {100 * values[0]:.0f}% -> {100 * values[-1]:.0f}%" if len(values) > 1
                      else f"{name} {100 * values[0]:.0f}%"))
    ks = sorted({k for k, _ in parts})
    acc = f"held-out accuracy (avg@{'/'.join(ks)}): {', '.join(p for _, p in parts)}; " if parts else ""
    board = f"; TensorBoard: tensorboard --logdir {folder}" if tensorboard else ""
    return f"{acc}curves: {Path(folder) / 'curves.png'}{board}"


def finish_plot(fig, ax, path: Path, dpi: int = 110) -> None:
    """The last lines of every one-panel plot (benchmarks/compare.py, benchmarks/comparison_report.py): grid,
    legend, tight layout, save, close (an open figure holds its memory until closed)."""
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
