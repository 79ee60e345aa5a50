"""Which Redis a command talks to, and how its failure reads.

``wsauth dev`` runs an embedded Redis on a free port, so the default
``redis://127.0.0.1:6379/0`` is not where its data is. While the stack runs,
``wsauth dev`` keeps a run file, ``{keys dir}/dev-run.json`` (mode 0600,
written atomically once the issuer and the gateway listen, removed when the
stack stops), with its PID and its Redis URL. The commands that talk to Redis
(``wsauth push``, ``wsauth revoke``) use that URL when ``WSAUTH_REDIS_URL``
is unset (:func:`redis_url_for`); a run file whose process is gone, or that
cannot be read, is ignored.

A Redis failure names the URL it tried, without its password
(:func:`redis_failure`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from wsauth.shared.core.config import Settings
from wsauth.shared.core.errors import Unavailable, WsAuthError
from wsauth.shared.store.files import dumps, write_atomic

RUN_FILE = "dev-run.json"


@dataclass(frozen=True)
class DevRun:
    """What a running ``wsauth dev`` records in its run file."""

    pid: int
    redis_url: str = field(repr=False)  # may hold a password (WSAUTH_REDIS_URL)


def run_file(keys_dir: Path) -> Path:
    return keys_dir / RUN_FILE


def write_run_file(keys_dir: Path, run: DevRun) -> None:
    """Record ``run`` (mode 0600: the URL may hold a password).

    Raises:
        OSError: the key store directory is not writable.
    """
    write_atomic(run_file(keys_dir), dumps({"pid": run.pid, "redis_url": run.redis_url}))


def remove_run_file(keys_dir: Path, pid: int) -> None:
    """Remove the run file if process ``pid`` wrote it (a second stack's file stays)."""
    run = read_run_file(keys_dir, alive=lambda _pid: True)
    if run is not None and run.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            run_file(keys_dir).unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, but not ours to trust
        return False
    return True


def read_run_file(keys_dir: Path, *, alive: Callable[[int], bool] | None = None) -> DevRun | None:
    """The run file of a ``wsauth dev`` that is still running, or None.

    ``alive`` (a ``pid -> bool`` callable, default: the process exists and is
    this user's) says whether the recorded process still runs.
    """
    try:
        document = json.loads(run_file(keys_dir).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict):
        return None
    pid, url = document.get("pid"), document.get("redis_url")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not isinstance(url, str):
        return None
    return DevRun(pid, url) if (alive or _alive)(pid) else None


def redis_url_for(settings: Settings) -> str:
    """The Redis URL a command uses: ``WSAUTH_REDIS_URL`` when set, else the one of a
    running ``wsauth dev`` with the same key store, else the default."""
    if settings.redis_url is None:
        run = read_run_file(settings.keys_dir)
        if run is not None:
            from wsauth.shared.state.redis_conn import parse_redis_url

            with contextlib.suppress(ValueError):  # not a URL: the default, as without a file
                url = parse_redis_url(run.redis_url).url
                return settings.replace(redis_url=url).effective_redis_url
    return settings.effective_redis_url


def redis_failure(error: WsAuthError, url: str) -> str:
    """One line for a failed command: the code and the detail, and for Redis down the URL
    without its password: ``redis_unavailable: ConnectionError (Redis at redis://...)``."""
    from wsauth.shared.state.redis_conn import redact  # redis-py only where Redis is used

    line = f"{error.code}: {error.detail or error.code}"
    return f"{line} (Redis at {redact(url)})" if isinstance(error, Unavailable) else line
