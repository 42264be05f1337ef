"""Math-answer reward: the last \\boxed{...} checked against the ground truth by math-verify.

Model output is hostile input. The parent process only slices and scans a bounded tail of the text;
all sympy work (parse + verify) runs in spawned worker processes with a per-sample wall-clock
deadline, and a worker past its deadline is SIGKILLed and replaced. math-verify's own timeouts use
signal.alarm (main thread only), so they are disabled and the deadline here is the only budget.

Only math-verify's LaTeX extraction is used: its plain-expression extraction goes through
sympy.parse_expr, which eval()s text, and model output must never be eval'd.

Use as a recipe reward with `chord.rewards.math_verifier:math_reward`, or build a `MathReward(...)`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import multiprocessing as mp
import os
import queue
import re
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Literal

TAIL_CHARS = 16 * 1024  # answers sit at the end; scanning only the tail keeps 1 MB responses cheap
NUMBER_TAIL_CHARS = 1024
_BOXED = "\\boxed"
_BRACE_TOKENS = re.compile(r"\\.|[{}]", re.S)  # no nested quantifiers: linear, no backtracking
_TOKEN = re.compile(r"[^\s$]+")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:/[0-9]+)?", re.A)  # ASCII digits only

# Worker -> parent messages; results are (status, correct).
_READY, _START_ERROR = "ready", "start_error"
_OK, _PARSE_ERROR, _TIMEOUT = "ok", "parse_error", "timeout"


# ---------------------------------------------------------------- extraction (parent, bounded)


def _match_brace(text: str, open_at: int) -> int | None:
    """Index of the '}' closing the '{' at open_at, or None; iterative, escaped braces skipped."""
    depth = 0
    for m in _BRACE_TOKENS.finditer(text, open_at):
        tok = m.group()
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
            if depth == 0:
                return m.start()
    return None


def extract_boxed(text: str, tail_chars: int = TAIL_CHARS) -> str | None:
    """Content of the last \\boxed{...} (or `\\boxed 5`) in the last tail_chars; None if absent,
    unbalanced or blank. Only the last occurrence is tried so the scan stays linear."""
    tail = text[-tail_chars:]
    at = tail.rfind(_BOXED)
    while at >= 0:
        rest = at + len(_BOXED)
        if rest < len(tail) and (tail[rest] == "{" or tail[rest].isspace()):
            break
        at = tail.rfind(_BOXED, 0, at)  # e.g. \boxedfoo: a different macro, look further back
    if at < 0:
        return None
    i = at + len(_BOXED)
    while i < len(tail) and tail[i] in " \t":
        i += 1
    if i < len(tail) and tail[i] == "{":
        close = _match_brace(tail, i)
        content = None if close is None else tail[i + 1 : close]
    else:  # `\boxed 5`: one token, up to whitespace or the closing $
        m = _TOKEN.match(tail, i)
        content = m.group() if m else None
    return content if content and content.strip() else None


def last_number(text: str, tail_chars: int = NUMBER_TAIL_CHARS) -> str | None:
    """The last ASCII number (integer, decimal or a/b) in the tail of the text."""
    found = None
    for m in _NUMBER.finditer(text[-tail_chars:]):
        found = m.group()
    return found


def think_ok(text: str) -> bool:
    """At most one <think>...</think> block, closed if opened. A lone </think> is fine: chat
    templates (R1, Qwen3) put the opening tag in the prompt."""
    opens, closes = text.count("<think>"), text.count("</think>")
    if opens > 1 or closes > 1:
        return False
    if opens == 1:
        return closes == 1 and text.find("<think>") < text.find("</think>")
    return True


def _as_latex(s: str) -> str:
    s = s.strip()
    return s if "$" in s or "\\(" in s or "\\[" in s else f"${s}$"


# ---------------------------------------------------------------- worker side (sympy lives here)


def parse_and_verify(pred: str, gold: str) -> bool:
    """The default check, run inside a worker. Timeouts off: the parent's deadline bounds it."""
    from math_verify import LatexExtractionConfig, parse, verify

    cfg = [LatexExtractionConfig()]
    g = parse(_as_latex(gold), extraction_config=cfg, parsing_timeout=None, raise_on_error=True)
    p = parse(_as_latex(pred), extraction_config=cfg, parsing_timeout=None, raise_on_error=True)
    if not g or not p:
        raise ValueError("nothing parsed")
    return bool(verify(g, p, timeout_seconds=None, raise_on_error=True))


def _resolve(ref: str) -> Callable[[str, str], bool]:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _limit_memory(memory_mb: int | None) -> None:
    # A runaway bigint (2^{2^{40}}) should die with MemoryError in its worker, not swap the host.
    if not memory_mb:
        return
    try:
        import resource

        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass  # not Linux, or a lower hard limit already: keep what the OS gives


def _worker_main(conn: Connection, verifier: str, memory_mb: int | None) -> None:
    import logging
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the trainer; it closes us
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout disabled" warnings
    try:
        fn = _resolve(verifier)
        fn("1", "1")  # warm sympy's caches before the first deadline starts
    except Exception as e:
        conn.send((_START_ERROR, f"{type(e).__name__}: {e}"[:300]))
        return
    _limit_memory(memory_mb)
    conn.send((_READY, ""))
    while True:
        pred, gold = conn.recv()
        try:
            out = (_OK, bool(fn(pred, gold)))
        except BaseException:  # includes RecursionError, MemoryError: a bad sample, not a bad worker
            out = (_PARSE_ERROR, False)
        conn.send(out)


def _worker_entry() -> None:
    """`python -c` entry: argv = [fd, verifier, memory_mb]."""
    conn = Connection(int(sys.argv[1]))
    with contextlib.suppress(EOFError, OSError):  # the parent closed us or is gone: just exit
        _worker_main(conn, sys.argv[2], int(sys.argv[3]) or None)


# A fresh interpreter that imports only this module. Not multiprocessing's "spawn": it re-runs the
# parent's __main__ (chord.train, i.e. torch) in every worker and needs an `if __name__` guard.
_BOOT = ("import sys, json; sys.path[:] = json.loads(sys.argv.pop(1)); "
         "import chord.rewards.math_verifier as m; m._worker_entry()")


# ---------------------------------------------------------------- the pool (parent side)


@dataclass
class _Worker:
    proc: subprocess.Popen
    conn: Connection
    ready: bool = False
    job: int | None = None  # index into the batch being scored
    deadline: float = 0.0


def _kill(w: _Worker) -> None:
    w.proc.kill()  # SIGKILL: a worker stuck in C bigint code runs no Python signal handler
    w.proc.wait(timeout=5)
    w.conn.close()


def _reap(proc: subprocess.Popen) -> None:
    """Wait for a SIGKILLed worker to be gone (no zombie). Tearing down a worker that grew to GBs
    takes seconds under load: never on a caller's path."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=60)


def _close_all(workers: list[_Worker]) -> None:
    for w in workers:
        w.conn.close()  # idle workers exit on EOF
    for w in workers:
        try:
            w.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            _kill(w)
    workers.clear()


class _VerifierPool:
    """Own worker processes, one task each at a time, so a stuck one can be killed alone.

    Not ProcessPoolExecutor: it cannot cancel a running task, and killing its processes breaks the
    whole pool, failing every in-flight sample, not just the slow one. Workers are fresh
    interpreters (fork+exec, never a bare fork: the trainer has threads, and forking a threaded
    process can deadlock), so this works from any thread. Idle workers exit on EOF when the
    trainer dies; a finalizer closes them at interpreter exit.
    """

    def __init__(self, workers: int, timeout_s: float, verifier: str, memory_mb: int | None):
        self.n, self.timeout_s, self.verifier, self.memory_mb = workers, timeout_s, verifier, memory_mb
        self.workers: list[_Worker] = []
        weakref.finalize(self, _close_all, self.workers)  # also runs at exit
        self.start_failures = 0
        self.lock = threading.Lock()  # one batch at a time per pool
        # Killed workers are reaped and replaced by background threads: a timed-out sample returns at its
        # deadline. New workers arrive through `spawned`, and a byte on the wake pipe interrupts wait().
        self.respawning: list[threading.Thread] = []
        self.pending = 0  # replacements asked for and not yet adopted
        self.spawned: queue.SimpleQueue[_Worker | None] = queue.SimpleQueue()
        self.wake_r, self.wake_w = mp.Pipe(duplex=False)

    def _spawn(self) -> _Worker:
        parent, child = mp.Pipe()
        argv = [sys.executable, "-c", _BOOT, json.dumps(sys.path), str(child.fileno())]
        argv += [self.verifier, str(self.memory_mb or 0)]
        try:
            proc = subprocess.Popen(argv, pass_fds=[child.fileno()], stdin=subprocess.DEVNULL)
        finally:
            child.close()  # the parent keeps only its end, so it sees EOF when the worker dies
        return _Worker(proc, parent)

    def _replace(self, w: _Worker) -> None:
        """SIGKILL `w` and return at once; a background thread reaps it and starts its successor."""
        w.proc.kill()
        w.conn.close()
        self.workers.remove(w)
        self.pending += 1
        th = threading.Thread(target=self._respawn, args=(w.proc,), daemon=True, name="chord-verifier-respawn")
        self.respawning.append(th)
        th.start()

    def _respawn(self, proc: subprocess.Popen) -> None:
        _reap(proc)
        try:
            self.spawned.put(self._spawn())
        except OSError:  # e.g. out of processes: _fill tries again on the next batch
            self.spawned.put(None)
        with contextlib.suppress(OSError):
            self.wake_w.send_bytes(b"1")

    def _adopt(self) -> None:
        """Take in the workers the background threads have started."""
        while self.wake_r.poll():
            self.wake_r.recv_bytes()
        while not self.spawned.empty():
            w = self.spawned.get()
            self.pending -= 1
            if w is not None:
                self.workers.append(w)
        self.respawning = [t for t in self.respawning if t.is_alive()]

    def _fill(self) -> None:
        self._adopt()
        while len(self.workers) + self.pending < self.n:
            self.workers.append(self._spawn())

    def _wait(self, conns: list, timeout: float) -> list:
        """wait() on the workers' pipes and the wake pipe; adopts respawned workers."""
        ready = wait([*conns, self.wake_r], timeout=timeout)
        if self.wake_r in ready:
            self._adopt()
        return [c for c in ready if c is not self.wake_r]

    def _receive(self, w: _Worker, results: dict[int, tuple[str, bool]]) -> None:
        try:
            kind, value = w.conn.recv()
        except (EOFError, OSError):  # died (segfault, OOM-kill): its sample is a parse error
            if w.job is not None:
                results[w.job] = (_PARSE_ERROR, False)
            elif not w.ready:
                self._start_failed("worker exited during start-up")
            self._replace(w)
            return
        if kind == _READY:
            w.ready, self.start_failures = True, 0
        elif kind == _START_ERROR:
            self._start_failed(value)
            self._replace(w)
        else:
            results[w.job] = (kind, value)
            w.job = None

    def _start_failed(self, why: str) -> None:
        self.start_failures += 1
        if self.start_failures >= 3:  # a broken install, not a hostile sample: say so loudly
            raise RuntimeError(f"math reward workers cannot start: {why}")

    def _expire(self, results: dict[int, tuple[str, bool]]) -> None:
        now = time.monotonic()
        for w in list(self.workers):
            if w.job is not None and now >= w.deadline:
                results[w.job] = (_TIMEOUT, False)
                self._replace(w)

    def _dispatch(self, pending: deque[tuple[int, str, str]]) -> None:
        for w in list(self.workers):
            if pending and w.ready and w.job is None:
                job, pred, gold = pending.popleft()
                try:
                    w.conn.send((pred, gold))
                except OSError:  # died while idle (e.g. OOM killer): requeue, restart it
                    pending.appendleft((job, pred, gold))
                    self._replace(w)
                    continue
                w.job, w.deadline = job, time.monotonic() + self.timeout_s

    def run(self, jobs: Sequence[tuple[int, str, str]]) -> dict[int, tuple[str, bool]]:
        """(index, pred, gold) -> {index: (status, correct)}; each job gets timeout_s once a
        worker takes it (queueing and worker start-up don't count against it)."""
        with self.lock:
            self._fill()
            pending, results = deque(jobs), {}
            try:
                while len(results) < len(jobs):
                    self._dispatch(pending)
                    busy = [w.deadline for w in self.workers if w.job is not None]
                    wait_s = max(0.0, min(busy) - time.monotonic()) if busy else 1.0
                    for conn in self._wait([w.conn for w in self.workers], wait_s):
                        w = next((w for w in self.workers if w.conn is conn), None)
                        if w is not None:  # may have been replaced earlier in this loop
                            self._receive(w, results)
                    self._expire(results)
            except BaseException:  # e.g. KeyboardInterrupt: leave no worker grinding on a sample
                for w in [w for w in self.workers if w.job is not None]:
                    self._replace(w)
                raise
            return results

    def warm_up(self) -> None:
        with self.lock:
            self._fill()
            while self.pending or not all(w.ready for w in self.workers):
                for conn in self._wait([w.conn for w in self.workers if not w.ready], 1.0):
                    w = next((w for w in self.workers if w.conn is conn), None)
                    if w is not None:
                        self._receive(w, {})
                self._adopt()

    def close(self) -> None:
        with self.lock:
            for th in self.respawning:
                th.join(timeout=65)  # their new workers must not outlive the pool
            self._adopt()
            _close_all(self.workers)
            self.wake_r.close()
            self.wake_w.close()


# ---------------------------------------------------------------- the reward


class MathReward:
    """RewardFn: 1.0 if the last \\boxed{} answer equals the ground truth (math-verify), else 0.0,
    plus format_penalty (no boxed answer, or a malformed <think> block) and overlong_penalty
    (the caller says the response was truncated). Never raises on model output."""

    def __init__(
        self,
        format_penalty: float = 0.0,
        overlong_penalty: float = 0.0,
        timeout_s: float = 2.0,
        fallback: Literal["none", "last_number"] = "none",
        workers: int | None = None,
        worker_memory_mb: int | None = 4096,
        _verifier: str = "chord.rewards.math_verifier:parse_and_verify",  # test hook: "module:function"
    ):
        if fallback not in ("none", "last_number"):
            raise ValueError(f"fallback must be 'none' or 'last_number', got {fallback!r}")
        self.format_penalty, self.overlong_penalty = float(format_penalty), float(overlong_penalty)
        self.timeout_s, self.fallback = float(timeout_s), fallback
        # every rank scores its own engine's rollouts (rollout.placement: per_rank): share the node's cores
        local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        self.workers = workers or max(1, min(4, (os.cpu_count() or 1) // local_ranks))
        self.worker_memory_mb, self._verifier = worker_memory_mb, _verifier
        self._pool: _VerifierPool | None = None
        self._pool_lock = threading.Lock()

    def _get_pool(self) -> _VerifierPool:
        with self._pool_lock:  # lazy: importing or pickling the reward starts no process
            if self._pool is None:
                if importlib.util.find_spec("math_verify") is None:
                    raise ImportError("MathReward needs math-verify: pip install math-verify")
                self._pool = _VerifierPool(
                    self.workers, self.timeout_s, self._verifier, self.worker_memory_mb
                )
            return self._pool

    def _extract(self, text: str) -> tuple[str | None, bool]:
        boxed = extract_boxed(text)
        if boxed is not None or self.fallback == "none":
            return boxed, boxed is not None
        return last_number(text), False

    def score_batch(
        self, responses: Sequence[str], answers: Sequence[str], truncated: Sequence[bool] | None = None
    ) -> list[tuple[float, dict[str, float]]]:
        """Score a batch in parallel across the workers; one slow sample costs at most timeout_s
        and only holds its own worker."""
        truncated = truncated if truncated is not None else [False] * len(responses)
        if not (len(responses) == len(answers) == len(truncated)):
            raise ValueError("responses, answers and truncated must have the same length")
        extracted = [self._extract(r) for r in responses]
        jobs = [(i, pred, str(gold)) for i, ((pred, _), gold) in enumerate(zip(extracted, answers)) if pred]
        results = self._get_pool().run(jobs) if jobs else {}
        out = []
        for i, (text, (_, boxed)) in enumerate(zip(responses, extracted)):
            status, correct = results.get(i, (_OK, False))
            fmt_ok = boxed and think_ok(text)
            score = float(correct) + (0.0 if fmt_ok else self.format_penalty)
            score += self.overlong_penalty if truncated[i] else 0.0
            info = {
                "correct": float(correct),
                "format_ok": float(fmt_ok),
                "boxed_found": float(boxed),
                "timeout": float(status == _TIMEOUT),
                "parse_error": float(status == _PARSE_ERROR),
                "overlong": float(bool(truncated[i])),
            }
            out.append((score, info))
        return out

    def __call__(
        self, response: str, answer: str, *, truncated: bool = False
    ) -> tuple[float, dict[str, float]]:
        return self.score_batch([response], [answer], [truncated])[0]

    def warm_up(self) -> None:
        """Start the workers and wait until they are ready (else the first batch pays for it)."""
        self._get_pool().warm_up()

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> MathReward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:  # picklable: a copy starts its own pool
        state = self.__dict__.copy()
        state["_pool"], state["_pool_lock"] = None, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._pool_lock = threading.Lock()


math_reward = MathReward()  # `chord.rewards.math_verifier:math_reward` for a recipe; no process until first use
