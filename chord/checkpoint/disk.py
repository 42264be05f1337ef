"""A full disk or a failing filesystem, said in one line with the way back (docs/usage.md#checkpoints-resume-export).

Checkpoints are written into a temporary folder and renamed (chord.checkpoint.store), so a failed save
leaves `latest` on the previous complete checkpoint and the same command resumes from it once the disk
has room; what users need is that sentence, not torch.serialization's 30-line traceback (a full disk in
torch.save surfaces as `RuntimeError: [enforce fail at inline_container.cc:672] . unexpected pos`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

# what a filesystem says when it cannot take a write: full, over quota, read-only, broken, not ours
FS_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
             errno.EROFS: "read-only filesystem", errno.EIO: "input/output error",
             errno.EACCES: "permission denied", errno.EPERM: "operation not permitted"}
# torch.save's zip writer reports a failed write as a RuntimeError without the errno
TORCH_WRITE_FAILURES = ("inline_container.cc", "PytorchStreamWriter failed", "unexpected pos")
# libraries that wrap the OS error in their own type and keep only its text (safetensors' Rust writer:
# "IoError(Os { code: 28, kind: StorageFull, message: \"No space left on device\" })")
NO_SPACE_TEXTS = ("No space left on device", "StorageFull", "os error 28")


def filesystem_failure(e: BaseException) -> tuple[str, str | None] | None:
    """(what failed, the path) if `e` (or what caused it) is a filesystem refusing a write, else None."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in FS_ERRNOS:
            return FS_ERRNOS[e.errno], e.filename
        if isinstance(e, RuntimeError) and any(m in str(e) for m in TORCH_WRITE_FAILURES):
            return "a write failed (torch.save)", None
        if not isinstance(e, OSError) and any(m in str(e) for m in NO_SPACE_TEXTS):
            return "no space left on device", None
        e = e.__cause__ or e.__context__
    return None


def free_bytes(path: Path) -> int | None:
    """Free bytes on the filesystem holding `path` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def failure_message(e: BaseException, out_dir: Path, last_checkpoint: Path | None) -> str | None:
    """The one line for a filesystem failure during a run, or None if `e` is something else."""
    found = filesystem_failure(e)
    if found is None:
        return None
    what, path = found
    free = free_bytes(out_dir)
    if what.startswith("a write failed") and free is not None and free < 2**20:
        what = "no space left on device"  # torch hides the errno; an empty filesystem says it
    where = f" writing {path}" if path else f" under {out_dir}"
    last = f"the last complete checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint is complete yet"
    fix = "free space" if "space" in what or "quota" in what else "fix the filesystem"
    return f"{what}{where}; {last}; {fix} and re-run the same command to resume"


def checkpoint_size_estimate(parameters: int) -> int:
    """Bytes of one checkpoint over all ranks: fp32 master weights and Adam's two moments (DeepSpeed saves
    them at every ZeRO stage; ZeRO-1/2/3 in shards that add up to the same bytes), 12 bytes a parameter."""
    return parameters * 12


def space_warning(out_dir: Path, parameters: int, keep_last: int) -> str | None:
    """A one-line warning when the output filesystem cannot hold keep_last + 1 checkpoints (one is being
    written while the last keep_last are kept)."""
    need = checkpoint_size_estimate(parameters) * (keep_last + 1)
    free = free_bytes(out_dir)
    if free is None or free >= need:
        return None
    return (f"warning: {out_dir} has {free / 2**30:.2f} GiB free; trainer.keep_last={keep_last} checkpoints plus "
            f"the one being written need about {need / 2**30:.2f} GiB (a save that runs out of space stops the run)")


def remove_partial(path: Path) -> None:
    """Best effort: a half-written file or folder goes (resume ignores it anyway)."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        with contextlib.suppress(OSError):
            os.remove(path)
