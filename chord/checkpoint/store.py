"""Atomic, resumable checkpoints: everything that determines the rest of the run.

Layout under run.output_dir/checkpoints/:
    step_<N>/              DeepSpeed engine (model, optimizer, lr schedule) + trainer_state.json
                           (step, data-stream positions, world size, resolved config, the size and
                           sha256 of every other file) + rng_rank<r>.json
    latest                 the tag of the newest complete checkpoint (written last, by rename)
A checkpoint is written into `.tmp-step_<N>`, fsynced and renamed; a kill during a save leaves
the previous checkpoint loadable and the half-written folder is ignored (and reported) on resume.
A folder whose files do not match their recorded sizes and hashes (or holds files it did not
record) is damaged: skipped under resume=auto, refused when named. chord reads its own files as
data (chord/checkpoint/files.py); DeepSpeed unpickles its own, which is why the hashes are checked
before anything is loaded, and before the model and engine are built (preflight).
vLLM sampling needs no state: every step seeds its requests from (run seed, step, prompt slot).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Protocol

from omegaconf import OmegaConf

from chord import faults
from chord.checkpoint.disk import remove_partial
from chord.checkpoint.files import hash_files, restore_rng, rng_state, sha256_file
from chord.config import ChordConfig, ConfigError, to_yaml
from chord.data.streams import ShuffledStream
from chord.distributed import Dist, barrier, broadcast
from chord.learner import Learner
from chord.logger import RUN_LOGS, atomic_write_text, say
from chord.types import LoopState

# Differences that leave the run's meaning intact; anything else refuses to resume.
HARMLESS = ("trainer.steps", "trainer.save_every", "trainer.keep_last", "trainer.resume", "trainer.save_at_end",
            "trainer.max_logprob_gap", "trainer.max_nonfinite_steps", "trainer.micro_batch_size",
            "trainer.max_tokens_per_micro_batch", "trainer.packing", "logging.", "run.output_dir", "run.name",
            "model.cache_dir", "loss.", "rollout.kv_cache_gib", "rollout.gpu_memory_utilization",
            "rollout.multiprocess", "rollout.enforce_eager", "rollout.placement", "rollout.weight_bucket_mb",
            "rollout.sleep_mode", "trainer.epochs", "eval.", "hub.")
STATE = "trainer_state.json"


def _fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Resumable(Protocol):
    """What a checkpoint saves and restores of a run (chord.build.Run is one)."""

    cfg: ChordConfig
    dist: Dist
    out_dir: Path
    learner: Learner
    prompts: ShuffledStream | None
    experts: ShuffledStream | None
    state: LoopState


def save(run: Resumable, step: int) -> Path:
    """Collective: every rank calls it. Returns the final folder; a failed save leaves no half-written one."""
    root = run.out_dir / "checkpoints"
    tag, tmp_tag = f"step_{step}", f".tmp-step_{step}"
    tmp, final = root / tmp_tag, root / tag
    if run.dist.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        root.mkdir(exist_ok=True)  # not parents: a run folder moved away mid-run must not be re-created here
    barrier()
    try:
        return _save(run, step, tmp, final)
    except BaseException:
        if run.dist.is_main:  # a full disk, a kill by signal handler...: the half-written folder goes now
            remove_partial(tmp)
        raise


def _save(run: Resumable, step: int, tmp: Path, final: Path) -> Path:
    root = tmp.parent
    run.learner.save_checkpoint(str(root), tag=tmp.name, client_state={"step": step})
    (tmp / f"rng_rank{run.dist.rank}.json").write_text(json.dumps(rng_state()))
    barrier()
    names = broadcast([str(f.relative_to(tmp)) for f in sorted(tmp.rglob("*")) if f.is_file()]
                      if run.dist.is_main else None)
    hashes = hash_files(tmp, names, run.dist.rank, run.dist.world)  # the ranks share the work
    if run.dist.is_main:
        files = {n: (tmp / n).stat().st_size for n in names}
        state = {"step": step, "world_size": run.dist.world, "config": to_yaml(run.cfg), "files": files,
                 "sha256": hashes,
                 "nonfinite_streak": run.state.nonfinite_streak, "best": run.state.best,
                 "prompts": run.prompts.state_dict() if run.prompts else None,
                 "experts": run.experts.state_dict() if run.experts else None}
        faults.fs_fault("checkpoint", step, tmp / STATE)  # tests only
        (tmp / STATE).write_text(json.dumps(state))
        faults.signal_self("CRASH_IN_SAVE", step)  # tests only: die mid-save
        _fsync_tree(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        atomic_write_text(root / "latest", final.name)
        complete = sorted(_complete(root), key=lambda p: int(p.name.split("_")[1]))
        for old in complete[: -run.cfg.trainer.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def _complete(root: Path) -> list[Path]:
    return [p for p in root.glob("step_*") if (p / STATE).is_file()]


def find(cfg: ChordConfig) -> Path | None:
    """The checkpoint folder to resume from per trainer.resume, or None for a fresh start."""
    mode = cfg.trainer.resume
    if mode == "none":
        return None
    if mode != "auto":
        path = Path(mode)
        problem = damage(path) if (path / STATE).is_file() else f"no {STATE}: not a complete chord checkpoint"
        if problem:
            raise ConfigError(f"'trainer.resume' = {mode}: {problem}")
        return path
    root = Path(cfg.run.output_dir) / "checkpoints"
    return find_in(root) if root.is_dir() else None


def last_complete(root: Path) -> Path | None:
    """The checkpoint `latest` names if it is complete, else the newest complete one (no hashing: for messages)."""
    pointer = root / "latest"
    named = root / pointer.read_text().strip() if pointer.is_file() else None
    complete = sorted(_complete(root), key=lambda p: int(p.name.split("_")[1])) if root.is_dir() else []
    return named if named in complete else (complete[-1] if complete else None)


def find_in(root: Path) -> Path | None:
    """The newest intact checkpoint under `root` (the `latest` pointer first), reporting bad ones."""
    for partial in root.glob(".tmp-step_*"):
        say(f"ignoring half-written checkpoint {partial} (interrupted save)", main_only=False)
    complete = sorted(_complete(root), key=lambda p: int(p.name.split("_")[1]), reverse=True)
    pointer = root / "latest"
    named = root / pointer.read_text().strip() if pointer.is_file() else None
    if pointer.exists() and named not in complete:
        say(f"checkpoint pointer {pointer} names no complete checkpoint; using the newest intact one", main_only=False)
    for path in ([named] if named in complete else []) + [p for p in complete if p != named]:
        problem = damage(path)
        if problem is None:
            return path
        say(f"skipping damaged checkpoint {path}: {problem}", main_only=False)
    return None


def damage(path: Path) -> str | None:
    """Why the checkpoint in `path` cannot be trusted (missing, truncated, changed or extra files), or None."""
    try:
        state = json.loads((path / STATE).read_text())
        files, hashes = state["files"], state["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"unreadable {STATE} ({type(e).__name__})"
    for name, size in files.items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != size:
            return f"{name} has {f.stat().st_size} bytes, {size} were written"
    extra = sorted(str(f.relative_to(path)) for f in path.rglob("*") if f.is_file()
                   and f.name != STATE and str(f.relative_to(path)) not in files)
    if extra:  # DeepSpeed picks files by name: one the save did not write must not be loaded
        return f"{extra[0]} was not written by the save"
    for name in files:
        if hashes.get(name) != sha256_file(path / name):
            return f"{name} does not match its recorded sha256 (changed after the save)"
    return None


def preflight(cfg: ChordConfig, d: Dist) -> Path | None:
    """Collective, before the model and engine are built: rank 0 picks the checkpoint per trainer.resume,
    checks its files (sizes, hashes), world size and config; every rank gets the checkpoint or the error."""
    verdict: tuple[str | None, str | None] = (None, None)
    if d.is_main:
        try:
            path = find(cfg)
            if path is not None:
                check_resumable(path, cfg, d.world)
            verdict = (str(path) if path is not None else None, None)
        except ConfigError as e:
            verdict = (None, str(e))
    found, error = broadcast(verdict)
    if error is not None:
        raise ConfigError(error)
    return Path(found) if found is not None else None


def _zero_stage(cfg: ChordConfig) -> int:
    """The ZeRO stage DeepSpeed will use (deepspeed.config_path was checked to be a JSON object)."""
    if cfg.deepspeed.config_path:
        ds = json.loads(Path(cfg.deepspeed.config_path).read_text())
        return int((ds.get("zero_optimization") or {}).get("stage", 0))
    return cfg.deepspeed.zero_stage


def check_resumable(path: Path, cfg: ChordConfig, world: int) -> None:
    """The refusals of `load`, made before anything is built (load repeats them as a safety net)."""
    _refuse(path, json.loads((path / STATE).read_text()), cfg, world, _zero_stage(cfg))


def _refuse(path: Path, state: dict, cfg: ChordConfig, world: int, zero_stage: int) -> list[str]:
    """Raise the one-line refusal a resume of `state` into this launch deserves; else the harmless changes."""
    old_world = state["world_size"]
    if old_world != world and zero_stage != 0:
        raise ConfigError(f"checkpoint {path} was written by {old_world} ranks with ZeRO-{zero_stage}, this launch "
                          f"has {world}: ZeRO-1/2/3 optimizer shards reload only on the same number of ranks; "
                          f"relaunch with {old_world} (ZeRO-0 checkpoints move freely)")
    meaningful, harmless = config_differences(state["config"], cfg)
    if meaningful:
        raise ConfigError(f"checkpoint {path} was trained with a different config: {', '.join(meaningful)} "
                          "(set trainer.resume=none and a new run.output_dir to start a new run)")
    return harmless


def config_differences(saved_yaml: str, cfg: ChordConfig) -> tuple[list[str], list[str]]:
    """(meaningful, harmless) dotted keys whose values differ between the checkpoint and now."""
    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    old = flat(OmegaConf.to_container(OmegaConf.create(saved_yaml)))
    new = flat(OmegaConf.to_container(OmegaConf.create(to_yaml(cfg))))
    diff = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    harmless = [k for k in diff if k.startswith(HARMLESS)]
    return [k for k in diff if k not in harmless], harmless


def load(run: Resumable, path: Path) -> None:
    """Collective: restore learner, streams, RNG and run.state (from the step it ended) from `path`."""
    state = json.loads((path / STATE).read_text())
    old_world = state["world_size"]
    harmless = _refuse(path, state, run.cfg, run.dist.world, run.learner.zero_stage)
    if harmless and run.dist.is_main:
        say(f"resuming with changed settings: {', '.join(harmless)}")
    run.learner.load_checkpoint(str(path.parent), tag=path.name)
    if run.prompts is not None:
        run.prompts.load_state_dict(state["prompts"])
    if run.experts is not None:
        run.experts.load_state_dict(state["experts"])
    run.state = LoopState(step=int(state["step"]), nonfinite_streak=int(state["nonfinite_streak"]),
                          best=state["best"])
    # every rank's own RNG when the world is unchanged; a new rank takes rank 0's (sampling and data order
    # do not use these generators: they are seeded per step, so a resharded run stays the same run)
    restore_rng(_rng_file(path, run.dist.rank))
    if run.dist.is_main and old_world != run.dist.world:
        say(f"checkpoint written by {old_world} ranks, resuming on {run.dist.world} (ZeRO-0: full state on each rank)")
    if run.dist.is_main:
        for log in RUN_LOGS:
            _truncate_metrics(run.out_dir / log, state["step"])
        say(f"resumed from {path} at step {state['step']}")


def _rng_file(path: Path, rank: int) -> Path:
    """rng_rank<r>.json; a rank the checkpoint did not have takes rank 0's."""
    for r in (rank, 0):
        if (path / f"rng_rank{r}.json").is_file():
            return path / f"rng_rank{r}.json"
    raise ConfigError(f"checkpoint {path} has no rng_rank0.json")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop lines of steps after the checkpoint (they are about to be re-run) and torn lines (a write the
    disk could not finish: the run stopped there, so nothing after it is lost)."""
    if not path.is_file():
        return
    keep, torn = [], 0
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line) if line else None
        except json.JSONDecodeError:
            torn += 1
            continue
        if isinstance(row, dict) and row.get("step", step + 1) <= step:
            keep.append(line)
    if torn:
        say(f"{path.name}: dropped {torn} torn line(s) left by an interrupted write")
    atomic_write_text(path, "".join(f"{line}\n" for line in keep))


class StopFlag:
    """SIGTERM/SIGINT ask the run to finish the current step (or evaluation, or export), checkpoint and exit
    0. Installed once per process, before anything is built, so a signal during start-up, an evaluation or
    a stage switch is kept too. A second signal stops at once, as an unhandled one would (the last complete
    checkpoint stays; chord/distributed/reaper.py cleans up after the process), unless it comes within
    REPEAT_S of the first: Ctrl-C under torchrun reaches a rank twice (the terminal's SIGINT and the
    launcher's SIGTERM), and that is one request."""

    REPEAT_S = 2.0

    def __init__(self) -> None:
        self.requested = False
        self.first_at = 0.0
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.requested and time.monotonic() - self.first_at < self.REPEAT_S:
            return
        if self.requested:
            say(f"received a second {name}: stopping now, without a checkpoint of this step", main_only=False)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.requested, self.first_at = True, time.monotonic()
        say(f"received {name}: finishing this step, then checkpointing (a second {name} stops at once)",
            main_only=False)
