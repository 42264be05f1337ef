"""Fault injection for the resume and non-finite tests: one place, inert unless a CHORD_TEST_* variable is set.

    CHORD_TEST_KILL_AT_STEP=N      SIGKILL rank 0 at the start of step N (preemption)
    CHORD_TEST_TERM_AT_STEP=N      SIGTERM rank 0 at the start of step N (polite stop: save, exit 0)
    CHORD_TEST_NAN_AT_STEPS=N,M    a NaN mu at those steps (a non-finite loss and gradient)
    CHORD_TEST_CRASH_IN_SAVE=N     SIGKILL rank 0 in the middle of step N's checkpoint save
    CHORD_TEST_KILL_AFTER_SAVE=N   SIGKILL rank 0 right after step N's checkpoint (before the next step)
"""

from __future__ import annotations

import os
import signal

SIGNALS = {"KILL_AT_STEP": signal.SIGKILL, "TERM_AT_STEP": signal.SIGTERM, "CRASH_IN_SAVE": signal.SIGKILL,
           "KILL_AFTER_SAVE": signal.SIGKILL}


def injected(point: str, step: int) -> bool:
    """Whether CHORD_TEST_<point> lists this step."""
    value = os.environ.get(f"CHORD_TEST_{point}")
    return value is not None and str(step) in value.split(",")


def signal_self(point: str, step: int, is_main: bool = True) -> None:
    """Rank 0 sends itself the fault's signal at this point of this step, if injected."""
    if is_main and injected(point, step):
        os.kill(os.getpid(), SIGNALS[point])


def nan_mu(mu: float, step: int) -> float:
    """A NaN mu at the injected steps: the loss and every gradient become non-finite."""
    return float("nan") if injected("NAN_AT_STEPS", step) else mu
