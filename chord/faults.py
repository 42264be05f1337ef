"""Fault injection for the resume, non-finite and filesystem tests: one place, inert unless a CHORD_TEST_*
variable is set.

    CHORD_TEST_KILL_AT_STEP=N      SIGKILL rank 0 at the start of step N (preemption)
    CHORD_TEST_TERM_AT_STEP=N      SIGTERM rank 0 at the start of step N (polite stop: save, exit 0)
    CHORD_TEST_TERM_IN_START_UP=learner  SIGTERM rank 0 once its learner is built, before the engine starts
    CHORD_TEST_TERM_IN_EVAL=N      SIGTERM rank 0 as step N's evaluation starts (N=0: the one before training)
    CHORD_TEST_TERM_IN_EXPORT=X    SIGTERM rank 0 in the middle of exporting X (best or final)
    CHORD_TEST_TERM_AT_STAGE_SWITCH=N  SIGTERM rank 0 right after stage N of a staged run finished
    CHORD_TEST_NAN_AT_STEPS=N,M    a NaN mu at those steps (a non-finite loss and gradient)
    CHORD_TEST_CRASH_IN_SAVE=N     SIGKILL rank 0 in the middle of step N's checkpoint save
    CHORD_TEST_KILL_AFTER_SAVE=N   SIGKILL rank 0 right after step N's checkpoint (before the next step)
    CHORD_TEST_FS_FAULT=SITE:KEY[:ERRNO]  the filesystem refuses a write (default ENOSPC) at one write site:
                                   metrics:N, eval:N, checkpoint:N (step N) or export:best, export:final
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

SIGNALS = {"KILL_AT_STEP": signal.SIGKILL, "TERM_AT_STEP": signal.SIGTERM, "CRASH_IN_SAVE": signal.SIGKILL,
           "KILL_AFTER_SAVE": signal.SIGKILL, "TERM_IN_EVAL": signal.SIGTERM, "TERM_IN_EXPORT": signal.SIGTERM,
           "TERM_AT_STAGE_SWITCH": signal.SIGTERM, "TERM_IN_START_UP": signal.SIGTERM}


def injected(point: str, step: int | str) -> bool:
    """Whether CHORD_TEST_<point> lists this step (or name)."""
    value = os.environ.get(f"CHORD_TEST_{point}")
    return value is not None and str(step) in value.split(",")


def signal_self(point: str, step: int | str, is_main: bool = True) -> None:
    """Rank 0 sends itself the fault's signal at this point of this step, if injected."""
    if is_main and injected(point, step):
        os.kill(os.getpid(), SIGNALS[point])


def nan_mu(mu: float, step: int) -> float:
    """A NaN mu at the injected steps: the loss and every gradient become non-finite."""
    return float("nan") if injected("NAN_AT_STEPS", step) else mu


def fs_fault(site: str, key: int | str, path: str | Path) -> None:
    """Raise the OSError a full (or broken) filesystem gives for a write of `path`, if injected here."""
    value = os.environ.get("CHORD_TEST_FS_FAULT")
    if value is None:
        return
    want_site, want_key, *code = value.split(":")
    if (want_site, want_key) == (site, str(key)):
        number = getattr(errno, code[0]) if code else errno.ENOSPC
        raise OSError(number, os.strerror(number), str(path))
