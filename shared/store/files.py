"""Atomic writes of small files (the key store, the issuer's users and clients).

Every write goes to a temporary file in the same directory, is fsync'ed,
gets its mode and is renamed into place, so a reader sees the old file or the
new one, never half of either; then the directory is fsync'ed, so that the
rename itself survives a crash or power loss (POSIX leaves it in the page
cache until then).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``: temporary file, fsync, chmod, rename, fsync the directory.

    Raises:
        OSError: the directory is not writable (the file is unchanged).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """fsync ``directory`` so that a rename into it is durable.

    Raises:
        OSError: the directory cannot be opened or synced.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def dumps(document: Any) -> bytes:
    """Stable, readable JSON: sorted keys, two-space indent, a final newline."""
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")
