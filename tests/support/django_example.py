"""docs/examples/django_project as a real process: migrated, a user created, ``runserver``.

Run as the how-to says (``python manage.py ...`` in the project's folder), with
the test's key store and Redis in ``WSAUTH_*`` variables and the database in a
temporary file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.polling import wait_until
from wsauth.shared.core.config import Settings
from wsauth.shared.state.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "docs" / "examples" / "django_project"
PASSWORD = "alice-password-123"


@dataclass
class DjangoSite:
    url: str
    env: dict[str, str]


def project_env(settings: Settings, database: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WSAUTH_", "DJANGO_")) and key != "PYTHONPATH"
    }
    env.update(
        DJANGO_SECRET_KEY="example-secret-key-for-tests-only-0123456789abcdef",
        DJANGO_DB=str(database),
        WSAUTH_KEYS_DIR=str(settings.keys_dir),
        WSAUTH_REDIS_URL=str(settings.redis_url),
        WSAUTH_GATEWAY_URL=settings.gateway_url,
    )
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def run_django_site(settings: Settings, database: Path, *, port: int = 0) -> Iterator[DjangoSite]:
    """Migrate, create ``alice``, serve on 127.0.0.1; stop the server by its PID."""
    env = project_env(settings, database)
    for args in (
        ("migrate", "--noinput"),
        ("shell", "-c", _CREATE_USER),
    ):
        done = manage(env, *args)
        assert done.returncode == 0, done.stderr
    port = port or free_port()
    with subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as server:
        try:
            wait_until(
                lambda: _accepts(port) or server.poll() is not None,
                timeout=30,
                what="runserver up",
            )
            assert server.poll() is None, "runserver exited"
            yield DjangoSite(f"http://127.0.0.1:{port}", env)
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)


_CREATE_USER = (
    "from django.contrib.auth.models import User; "
    f"User.objects.create_user('alice', password='{PASSWORD}'); "
    f"User.objects.create_user('bob', password='{PASSWORD}')"
)


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0
