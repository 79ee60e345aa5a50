"""Small JSON files in the key store directory: atomic writes, a lock, change detection.

The issuer keeps its durable state (demo users, API clients) in JSON files
beside the keys, so a Redis restart loses no credential (DESIGN.md). Every
write goes to a temporary file in the same directory, is fsync'ed, gets its
mode (0600: the files hold password and secret hashes) and is renamed into
place, so a reader sees the old file or the new one, never half of either.
Writers (the CLI, ``--demo``) hold an ``flock`` on ``{file}.lock`` for the
whole read-change-write, so two commands cannot lose each other's change.

The running issuer reads them through
:class:`~wsauth.shared.store.watched.WatchedFile` (re-exported here): one
``stat`` per call, a re-read only when the file changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wsauth.shared.store.files import dumps, write_atomic
from wsauth.shared.store.watched import WatchedFile, fingerprint

__all__ = ["WatchedFile", "dumps", "fingerprint", "locked", "read_json", "write_atomic"]


def read_json(path: Path) -> Any:
    """The parsed file, or None when it does not exist.

    Raises:
        OSError: it exists but cannot be read.
        ValueError: it is not JSON.
    """
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``{path}.lock`` for a read-change-write."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
