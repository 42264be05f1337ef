"""Built-in tasks: one module each (generator, expert demonstrations, reward), and the registry.

A new task is one module here plus a line in BUILTIN_TASKS (and in chord.rewards' BUILTIN when it
brings its own reward), plus a base model in chord.models when it needs one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from chord.config import ChordConfig, ConfigError
from chord.config.cache_dir import cache_writes


def _tiny_task(style: str) -> Callable[[Path], dict[str, Path]]:
    def files(cache_dir: Path) -> dict[str, Path]:
        from chord.tasks.tiny import generate_tiny_task

        return generate_tiny_task(cache_dir / "tiny_task", seed=0, style=style)  # rl, expert, eval

    return files


def _points24(ood: bool) -> Callable[[Path], dict[str, Path]]:
    """The train split serves as RL prompts and expert rows (it has prompt, answer and messages);
    points24_ood is an evaluation set only (the face-card rule is never trained on)."""

    def files(cache_dir: Path) -> dict[str, Path]:
        from chord.tasks.points24 import cached_points24

        split = cached_points24(cache_dir / "points24", seed=0)
        if ood:
            return {"eval": split["eval_ood"]}
        return {"rl": split["train"], "expert": split["train"], "eval": split["eval_id"]}

    return files


CARDS_VAL = 100  # validation hands of builtin:cards_train / cards_val (docs/benchmark.md#splits)


def _cards(part: str) -> Callable[[Path], dict[str, Path]]:
    """cards: ID hands (rule face=10) for RL prompts, expert rows and (test) evaluation; cards_ood (rule
    face=faces): an evaluation set only. cards_train: the same test hands, with RL and expert hands disjoint
    from each other and from cards_val, the validation ID hands (an evaluation set only) that checkpoints and
    learning rates are selected on (docs/benchmark.md#splits)."""

    def files(cache_dir: Path) -> dict[str, Path]:
        from chord.tasks.cards import generate_cards_task

        out = generate_cards_task(cache_dir / "cards_task", seed=0, n_val=0 if part in ("cards", "ood") else CARDS_VAL)
        if part == "ood":
            return {"eval": out["eval_ood"]}
        if part == "val":
            return {"eval": out["eval_val"]}
        return {k: out[k] for k in ("rl", "expert", "eval")}

    return files


# name -> (model.cache_dir -> {kind: file}); kinds are rl, expert, eval
BUILTIN_TASKS: dict[str, Callable[[Path], dict[str, Path]]] = {
    "tiny": _tiny_task("answer"),
    "tiny_math": _tiny_task("boxed"),
    "points24": _points24(ood=False),
    "points24_ood": _points24(ood=True),
    "cards": _cards("cards"),
    "cards_ood": _cards("ood"),
    "cards_train": _cards("train"),
    "cards_val": _cards("val"),
}


def builtin_source(cfg: ChordConfig, source: str, kind: str) -> str:
    """`builtin:<name>` -> the generated file of that kind (rl / expert / eval); other sources unchanged."""
    if not source.startswith("builtin:"):
        return source
    name = source.split(":", 1)[1]
    if name not in BUILTIN_TASKS:
        raise ConfigError(f"unknown built-in data source '{source}' (available: "
                          f"{', '.join('builtin:' + n for n in BUILTIN_TASKS)})")
    with cache_writes(cfg.model.cache_dir, f"the built-in data '{source}'"):  # a read-only cache is read
        files = BUILTIN_TASKS[name](Path(cfg.model.cache_dir))
    if kind not in files:
        use = {"rl": "data.prompts.source", "expert": "data.expert.source", "eval": "eval.benchmarks[].source"}
        raise ConfigError(f"built-in data source '{source}' has no {kind} data: it serves only as "
                          f"{' and '.join(use[k] for k in files)}")
    return str(files[kind])
