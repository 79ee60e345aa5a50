"""A value loaded from a file and loaded again only when the file changes.

:class:`WatchedFile` is what long-running processes read the key store and
the issuer's JSON files through: one ``stat`` per call, and a re-read only
when ``(st_ino, st_mtime_ns, st_size)`` changed. A rename gives the file a new
inode, so a file replaced by :func:`wsauth.shared.store.files.write_atomic`
is seen at once. (The one blind spot: a second rewrite within the
filesystem's timestamp granularity, of the same size, that happens to reuse
the inode freed by the first; it is picked up by the next change. The key
store's promote/revoke always changes the size of keyset.json.)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["Fingerprint", "WatchedFile", "fingerprint"]

T = TypeVar("T")

Fingerprint = tuple[int, int, int]


def fingerprint(path: Path) -> Fingerprint | None:
    """What identifies one version of a file, or None when it does not exist."""
    return _fingerprint(os.fspath(path))


def _fingerprint(path: str) -> Fingerprint | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class WatchedFile(Generic[T]):
    """A value loaded from a file, loaded again only when the file changes.

    ``load(path)`` builds the value (it may raise; nothing is cached then, so
    the next call tries again). Thread-safe: the threaded server calls
    :meth:`get` from many request threads.
    """

    def __init__(self, path: Path, load: Callable[[Path], T]) -> None:
        self.path = path
        self._fspath = os.fspath(path)  # os.stat of a str skips Path.__fspath__
        self._load = load
        self._lock = threading.Lock()
        self._cache: tuple[Fingerprint | None, T] | None = None

    def get(self) -> T:
        current = _fingerprint(self._fspath)
        # Unchanged file (nearly every call): no lock. The cache is one tuple,
        # replaced whole, so a reader sees the old pair or the new one.
        cache = self._cache
        if cache is not None and cache[0] == current:
            return cache[1]
        with self._lock:
            if self._cache is None or self._cache[0] != current:
                # Stat before reading: if the file changes in between, the next
                # call sees a new fingerprint and reads it again.
                self._cache = (current, self._load(self.path))
            return self._cache[1]
