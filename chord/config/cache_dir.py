"""model.cache_dir: built-in models and task files are built there on first use, then only read.

A read-only cache (a shared, pre-built folder; a read-only mount in a container) is fine once everything a
recipe uses is built there. A build that cannot write is one ConfigError naming the key, and a model build is
probed before it starts: the card-sum base trains for minutes before its first write
(docs/usage.md#checkpoints-resume-export, the fault table).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from chord.config.schema import ConfigError

# what a filesystem says when it refuses a write (chord.checkpoint.disk phrases the same errnos for run folders)
REFUSED = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EIO)


def probe_writable(cache_dir: str | Path) -> None:
    """Create the folder if needed and write (then drop) one temporary file in it; raises the OSError."""
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=cache_dir):
        pass


@contextmanager
def cache_writes(cache_dir: str | Path, what: str) -> Iterator[None]:
    """Around a build of `what` into model.cache_dir: a write the filesystem refuses becomes one ConfigError."""
    try:
        yield
    except OSError as e:
        if e.errno not in REFUSED:
            raise
        raise ConfigError(
            f"model.cache_dir '{cache_dir}' cannot be written ({os.strerror(e.errno).lower()}): {what} is built "
            f"there on first use; set model.cache_dir to a writable folder, or build it once where the folder "
            f"is writable") from None
