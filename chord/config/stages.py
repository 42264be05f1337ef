"""Staged recipes: SFT-then-RL (and friends) as a chain of ordinary one-stage runs.

    stages:
      - {name: sft, method: sft, trainer: {epochs: 1, expert_per_step: 64, lr: 1.0e-5}}
      - {name: rl, method: grpo, init: best, trainer: {steps: 500}}

A stage's config = the recipe's sections (CLI overrides included) <- the method's presets <- the
stage's own sections, validated like any recipe. Methods (docs/algorithm.md#baselines-and-stages):
    sft    mu = 1, plain SFT weights, no rollouts        grpo   mu = 0, no expert data
    chord  the recipe's own algorithm section
Stage i runs in run.output_dir/stage<i>-<name> (its own checkpoints, metrics, TensorBoard) and a
later stage starts from the previous stage's `final/` export or, with `init: best`, from its
`best/` export (the best evaluation by eval.best_metric: the paper's "SFT-best"; "SFT-light" is
one SFT epoch and `init: final`). A finished stage leaves stage_done.json; re-running the command
skips finished stages and resumes the interrupted one from its own checkpoint.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from chord.config.schema import ChordConfig, ConfigError, check_keys, validate
from chord.logger import atomic_write_text

STAGE_KEYS = ("name", "method", "init")
# shared by every stage: identity, starting model, where the result goes (pushed after the last stage only), the plan
FIXED = ("run", "model", "hub", "stages")
SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(ChordConfig) if f.name not in FIXED}
_MU = {"warmup_steps": 0, "decay_steps": 0}
METHODS: dict[str, dict[str, Any]] = {
    "sft": {"algorithm": {"mu": {"peak": 1.0, "valley": 1.0, **_MU}, "sft_weight": "none"},
            "trainer": {"prompts_per_step": 0}},
    "grpo": {"algorithm": {"mu": {"peak": 0.0, "valley": 0.0, **_MU}},
             "trainer": {"expert_per_step": 0}, "data": {"expert": {"source": None}}},
    "chord": {},
}
DONE = "stage_done.json"


@dataclass
class Stage:
    index: int
    name: str
    method: str
    init: str  # final | best: which export of the previous stage this one starts from
    cfg: ChordConfig

    @property
    def dir(self) -> Path:
        return Path(self.cfg.run.output_dir)

    @property
    def label(self) -> str:
        return f"stage {self.index + 1} '{self.name}' ({self.method})"


def _entry(raw: Any, i: int) -> tuple[str, str, str, dict]:
    where = f"stages.{i}"
    if not isinstance(raw, dict):
        raise ConfigError(f"'{where}' must be a mapping with name, method and recipe sections")
    for key in raw:
        if key not in STAGE_KEYS and key not in SECTIONS:
            near = difflib.get_close_matches(str(key), [*STAGE_KEYS, *SECTIONS], n=1)
            why = " (run, model, hub and stages are shared by all stages)" if key in FIXED else ""
            hint = f" (did you mean '{where}.{near[0]}'?)" if near and not why else why
            raise ConfigError(f"unknown key '{where}.{key}'{hint}")
        if key in SECTIONS:
            check_keys(raw[key], SECTIONS[key], f"{where}.{key}.")
    name, method, init = str(raw.get("name", f"stage{i}")), raw.get("method", "chord"), raw.get("init", "final")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"'{where}.name' must be letters, digits, '-' or '_', got {name!r}")
    if method not in METHODS:
        raise ConfigError(f"'{where}.method' must be one of {', '.join(METHODS)}, got {method!r}")
    if init not in ("final", "best"):
        raise ConfigError(f"'{where}.init' must be final or best, got {init!r}")
    return name, method, init, {k: v for k, v in raw.items() if k in SECTIONS}


def expand(cfg: ChordConfig) -> list[Stage]:
    """The validated per-stage configs of a staged recipe (every stage checked before any work)."""
    base = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    base.pop("stages")
    root = Path(cfg.run.output_dir)
    if cfg.trainer.resume not in ("auto", "none"):
        raise ConfigError("'trainer.resume' must be auto or none for a staged recipe (each stage resumes from "
                          "its own checkpoints)")
    stages: list[Stage] = []
    for i, raw in enumerate(cfg.stages):
        raw = OmegaConf.to_container(raw, resolve=True) if OmegaConf.is_config(raw) else raw
        name, method, init, sections = _entry(raw, i)
        if any(s.name == name for s in stages):
            raise ConfigError(f"'stages.{i}.name' {name!r} is used twice")
        out = root / f"stage{i + 1}-{name}"
        identity: dict[str, Any] = {"run": {"name": f"{cfg.run.name}-{name}", "output_dir": str(out)}}
        if i < len(cfg.stages) - 1:  # the recipe's result is the last stage's export: only it is pushed
            identity["hub"] = {"push": "none"}
        if stages:
            prev = stages[-1]
            if init == "best" and not prev.cfg.eval.benchmarks:
                raise ConfigError(f"'stages.{i}.init' is best but stage '{prev.name}' has no eval.benchmarks "
                                  "to select a best checkpoint with")
            identity["model"] = {"path": str(prev.dir / init)}
        elif init != "final":
            raise ConfigError("'stages.0.init' must be final: the first stage starts from model.path")
        try:
            merged = OmegaConf.merge(OmegaConf.structured(ChordConfig), base, METHODS[method], sections, identity)
            stage_cfg: ChordConfig = OmegaConf.to_object(merged)
            validate(stage_cfg)
        except (OmegaConfBaseException, ConfigError) as e:
            key = getattr(e, "full_key", None)  # OmegaConf names the offending key; keep it
            msg = str(e).splitlines()[0]
            raise ConfigError(f"stages.{i} ({name}): " + (f"'{key}': {msg}" if key else msg)) from None
        if stage_cfg.trainer.resume not in ("auto", "none"):
            raise ConfigError(f"'stages.{i}.trainer.resume' must be auto or none: each stage resumes from its "
                              "own checkpoints")
        stages.append(Stage(i, name, method, init, stage_cfg))
    for s in stages[:-1]:
        if not s.cfg.trainer.save_at_end:
            raise ConfigError(f"stages.{s.index} ({s.name}): trainer.save_at_end must be true: the next stage "
                              "starts from its final/ export")
    return stages


def is_done(stage: Stage) -> bool:
    return (stage.dir / DONE).is_file()


def mark_done(stage: Stage, metrics: dict[str, float]) -> None:
    """Written last (atomically) by rank 0 once the stage's final/ (and best/) exports exist."""
    atomic_write_text(stage.dir / DONE, json.dumps({"stage": stage.name, "method": stage.method,
                                                    "steps": stage.cfg.trainer.steps, "final_metrics": metrics},
                                                   sort_keys=True))
