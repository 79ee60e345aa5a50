"""The production command of docs/howto/deploy.md serves the issuer."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.conftest import TEST_SECRET
from wsauth.shared.core.config import Settings
from wsauth.shared.state.redis_server import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "howto" / "deploy.md"
COMMAND = re.compile(r"^gunicorn .*$", re.MULTILINE)


def test_the_gunicorn_command_of_the_deploy_guide_serves_the_issuer(
    make_settings: Callable[..., Settings],
) -> None:
    if shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("gunicorn is not installed: it is in the dev extra of pyproject.toml")
    command = COMMAND.search(DEPLOY.read_text())
    assert command is not None, "deploy.md shows no gunicorn command"
    argv = shlex.split(command.group(0))
    assert argv == ["gunicorn", "-w", "2", "-b", "127.0.0.1:8000", "wsauth.issuer:create_app()"]

    settings = make_settings()
    port = free_port()
    argv[0] = str(Path(sys.executable).parent / "gunicorn")
    argv[4] = f"127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("WSAUTH_")}
    env.update(
        WSAUTH_SECRET_KEY=TEST_SECRET,
        WSAUTH_REDIS_URL=str(settings.redis_url),
        WSAUTH_KEYS_DIR=str(settings.keys_dir),
    )
    server = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except (requests.ConnectionError, requests.Timeout):  # booting, or a busy machine
                assert server.poll() is None, server.communicate()[0].decode()
                assert time.monotonic() < deadline, "gunicorn did not start within 30 s"
                time.sleep(0.2)
        assert (health.status_code, health.json()["status"]) == (200, "ok")
    finally:
        server.terminate()
        server.communicate(timeout=30)
