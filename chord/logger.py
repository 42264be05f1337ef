"""What a run writes and says: step metrics to metrics.jsonl and the trackers of chord/trackers.py
(TensorBoard, wandb, mlflow; rank 0 only), `chord:` lines on stderr, and files written atomically."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def say(msg: str, *, main_only: bool = True) -> None:
    """One `chord: ...` line on stderr; by default from rank 0 only (RANK is set by every launcher, and
    by chord.distributed for a plain `python` launch)."""
    if main_only and os.environ.get("RANK", "0") != "0":
        return
    print(f"chord: {msg}", file=sys.stderr, flush=True)


# the libraries whose info and warning lines a run hides unless logging.verbose is set
THIRD_PARTY = ("vllm", "deepspeed", "torch", "transformers", "datasets", "triton", "accelerate", "huggingface_hub",
               "tokenizers", "safetensors")
_verbose = True  # until quiet_third_party() decides: library use (tests, notebooks) keeps every line


def quiet_third_party(verbose: bool) -> None:
    """A run's terminal is chord's: vLLM's, DeepSpeed's, torch's and transformers' info and warning lines
    are off unless `verbose` (logging.verbose). Errors still print. Set through the environment before
    those libraries are imported, so vLLM's engine processes inherit it; a variable the user set wins."""
    global _verbose
    _verbose = verbose
    if verbose:
        return
    import logging
    import warnings

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # for engine processes (chord/train.py sets it early)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("WANDB_SILENT", "true")  # its banner and end-of-run history (chord.trackers says where)
    for name in THIRD_PARTY:
        warnings.filterwarnings("ignore", module=rf"{name}(\.|$)")
        logging.getLogger(name).setLevel(logging.ERROR)
    # DeepSpeed sets its logger's level when it is imported ("Setting accelerator to CPU" and the like): a
    # filter on the logger survives that
    logging.getLogger("DeepSpeed").addFilter(lambda record: record.levelno >= logging.ERROR)


def verbose() -> bool:
    """Whether third-party progress and warnings are shown (logging.verbose, or library use)."""
    return _verbose


@contextmanager
def library_stdout():
    """Around a library call that prints progress to stdout (DeepSpeed's "... built successfully" once its
    shm op is loaded): the print goes nowhere unless logging.verbose."""
    if _verbose:
        yield
        return
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        yield


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a whole file or nothing: a reader (or a resume after a kill) never sees half of it. The
    temporary name carries the pid, so two writers never share one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """One JSON object a line, written atomically (atomic_write_text)."""
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


class RunLogger:
    """Step metrics of rank 0: a line of metrics.jsonl each (the source of truth), then each tracker's copy."""

    def __init__(self, out_dir: str | Path, enabled: bool, trackers: Sequence[Any] = (),
                 before_write: Callable[[int, str], None] | None = None) -> None:
        """`trackers`: chord.trackers.Tracker objects (chord.trackers.open_trackers opens logging.trackers).
        `before_write(step, path)`: called before each metrics row; an OSError it raises is a write the
        filesystem refused (the fault-injection tests pass chord.faults.fs_fault here)."""
        self.enabled = enabled
        self.before_write = before_write
        self.trackers = list(trackers) if enabled else []
        if not enabled:
            return
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(self.dir / "metrics.jsonl", "a")  # noqa: SIM115 (closed in close())

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        line = json.dumps({"step": step, **scalars}, sort_keys=True) + "\n"
        try:
            if self.before_write is not None:
                self.before_write(step, self.jsonl.name)
        except OSError:
            self.jsonl.write(line[: len(line) // 2])  # what a full disk leaves: a torn last line
            self.jsonl.flush()
            raise
        self.jsonl.write(line)
        self.jsonl.flush()
        self._each(lambda t: t.log(step, scalars))

    def log_rollouts(self, step: int, rollouts: list) -> None:
        """logging.save_rollouts: the step's scored rollouts as a table, to the trackers that keep tables."""
        if not self.trackers:
            return
        rows = [{"group": r.group, "response": r.response_text, "reward": r.reward, "truncated": r.truncated,
                 "policy_version": r.policy_version} for r in rollouts]
        self._each(lambda t: t.log_rollouts(step, rows))

    def _each(self, call: Callable[[Any], None]) -> None:
        """A tracker that raises (network down, server gone) is off for the rest of the run after one warning
        line: metrics.jsonl, written first, has the row, and the run goes on. It is not closed: a close could
        wait on the same dead network."""
        for tracker in list(self.trackers):
            try:
                call(tracker)
            except Exception as e:
                self.trackers.remove(tracker)
                first = (str(e).strip().splitlines() or [""])[0][:200]
                say(f"warning: the {tracker.name} tracker failed ({type(e).__name__}: {first}); it is off for "
                    "the rest of this run (metrics.jsonl still gets every row)")

    def close(self) -> None:
        """Never raises: after a full disk the buffered tail cannot be written either, and the run is already
        stopping with a one-line message that this close must not replace with a traceback."""
        if self.enabled:
            with contextlib.suppress(OSError):
                self.jsonl.close()
            for tracker in self.trackers:
                with contextlib.suppress(Exception):
                    tracker.close()
            self.trackers = []


RUN_LOGS = ("metrics.jsonl", "eval.jsonl")


def set_aside_old_logs(out_dir: Path) -> None:
    """A run starting at step 0 in a folder that holds an earlier launch's logs (killed before its first
    checkpoint, or `trainer.resume=none`) must not append to them (steps 1, 2, 1, 2, 3): they are kept
    under a new name and the new run writes fresh files."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in RUN_LOGS:
        old = out_dir / name
        if old.is_file() and old.stat().st_size:
            kept = out_dir / f"{name}.prev-{stamp}"
            n = 1
            while kept.exists():  # a second restart in the same second, or a wall clock set back: never overwrite
                kept, n = out_dir / f"{name}.prev-{stamp}-{n}", n + 1
            os.replace(old, kept)
            say(f"starting at step 0; the earlier {name} of {out_dir} is kept as {kept.name}", main_only=False)


@contextmanager
def timed(times: dict[str, float], name: str):
    """Accumulate wall time of a block into times['time/<name>']."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        key = f"time/{name}"
        times[key] = times.get(key, 0.0) + time.perf_counter() - t0


def write_rollouts(out_dir: Path, step: int, rollouts: list) -> None:
    """logging.save_rollouts: one step's scored rollouts, one JSON line each (written atomically)."""
    folder = Path(out_dir) / "rollouts"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"group": r.group, "response_ids": r.response_ids, "response": r.response_text,
                         "reward": r.reward, "truncated": r.truncated, "policy_version": r.policy_version},
                        ensure_ascii=False) for r in rollouts]
    atomic_write_text(folder / f"step_{step}.jsonl", "".join(line + "\n" for line in lines))
