"""Checkpoints: atomic save and exact resume (`store`), RNG state and content hashes (`files`), and
offline reading of DeepSpeed weight files (`ds_weights`, for `python -m chord.export`).
"""

from chord.checkpoint.store import (
    STATE,
    StopFlag,
    check_resumable,
    config_differences,
    damage,
    find,
    find_in,
    last_complete,
    load,
    preflight,
    save,
)

__all__ = ["STATE", "StopFlag", "check_resumable", "config_differences", "damage", "find", "find_in", "last_complete",
           "load", "preflight", "save"]
