"""``wsauth gateway`` and ``wsauth issuer`` write JSON lines when stderr is not a terminal,
and text lines with ``WSAUTH_LOG_FORMAT=text``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.conftest import TEST_SECRET
from tests.observability.conftest import wait_until
from tests.ws.conftest import Tokens, raw_request, websocket_headers
from wsauth.shared.core.config import Settings
from wsauth.shared.state.redis_server import free_port

WSAUTH = Path(sys.executable).parent / "wsauth"


@contextmanager
def serve(command: str, settings: Settings, **env: str) -> Iterator[tuple[int, list[str]]]:
    """Run ``wsauth COMMAND --port P``; stop it by its PID (SIGTERM) at the end.

    Yields the port and a list that holds the lines of its stderr once it stopped.
    """
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WSAUTH_")}
    environment.update(
        WSAUTH_REDIS_URL=str(settings.redis_url),
        WSAUTH_KEYS_DIR=str(settings.keys_dir),
        WSAUTH_SECRET_KEY=TEST_SECRET,
        **env,
    )
    process = subprocess.Popen(
        [str(WSAUTH), command, "--port", str(port)],
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    stderr: list[str] = []
    try:
        wait_until(lambda: _ready(port, process), timeout=30, what=f"wsauth {command} to listen")
        yield port, stderr
    finally:
        process.terminate()
        try:
            _out, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            _out, err = process.communicate()
        stderr.extend(err.decode().splitlines())


def _ready(port: int, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, "the server exited"
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def test_wsauth_gateway_writes_one_json_object_per_line_without_the_token(
    settings: Settings, tokens: Tokens
) -> None:
    token, _ = tokens.issue(audience="someone-else")
    with serve("gateway", settings) as (port, stderr):
        answer = raw_request(
            port,
            [*websocket_headers(), ("X-Request-ID", "cli-1")],
            path=f"/ws?ws_token={token}",
        )
        assert (answer.status, answer.error) == (401, "wrong_audience")
    documents = [json.loads(line) for line in stderr]  # every line is JSON
    refusals = [d for d in documents if d["event"] == "request" and d["path"] == "/ws"]
    assert [(d["request_id"], d["status"], d["reason"]) for d in refusals] == [
        ("cli-1", 401, "wrong_audience")
    ]
    assert all(
        {"ts", "level", "logger", "event", "reason", "request_id"} <= set(d) for d in documents
    )
    text = json.dumps(documents)
    assert "ws_token" not in text
    for part in token.split("."):
        assert part not in text


def test_wsauth_issuer_writes_json_lines_by_default_and_text_lines_when_asked(
    settings: Settings,
) -> None:
    with serve("issuer", settings) as (port, stderr):
        requests.post(
            f"http://127.0.0.1:{port}/api/tokens", headers={"X-Request-ID": "cli-2"}, timeout=5
        )
    documents = [json.loads(line) for line in stderr]
    access = [d for d in documents if d["event"] == "request" and d["path"] == "/api/tokens"]
    assert [(d["request_id"], d["status"], d["reason"]) for d in access] == [
        ("cli-2", 401, "not_authenticated")
    ]

    with serve("issuer", settings, WSAUTH_LOG_FORMAT="text") as (port, stderr):
        requests.get(f"http://127.0.0.1:{port}/healthz?secret=x", timeout=5)
    lines = stderr
    healthz = [line for line in lines if "GET /healthz 200" in line]
    assert len(healthz) == 1
    assert " INFO wsauth.issuer.access GET /healthz 200 " in healthz[0]
    assert "request_id=" in healthz[0]
    assert not any("secret=x" in line for line in lines)  # werkzeug's own line is gone
