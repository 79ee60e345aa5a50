"""The README's snippets run as shown, the way a newcomer runs them: `wsauth dev` in a checkout
(here a temporary directory whose `.venv` is this virtualenv, so `.venv/bin/wsauth` and
`./keys` are what the README says), then the snippets in a second shell, without any
``WSAUTH_*`` variable. Only the ports differ: the README's 8000 and 8765 become free ones.

The JavaScript snippets run in Chromium on the demo page: tests/browser/test_readme_js.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.test_dev import Output, clean_env, dev_command
from wsauth.shared.state.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
VENV = Path(sys.executable).parent.parent


@dataclass(frozen=True)
class Snippet:
    language: str
    text: str


def readme_snippets() -> list[Snippet]:
    return [Snippet(lang, text) for lang, text in FENCE.findall(README.read_text())]


def snippet(language: str, containing: str) -> str:
    (found,) = [
        s.text for s in readme_snippets() if s.language == language and containing in s.text
    ]
    return found


@dataclass
class Checkout:
    """A directory laid out like a checkout beside a running `wsauth dev`."""

    path: Path
    issuer_port: int
    gateway_port: int

    def localize(self, text: str) -> str:
        """The snippet with this stack's ports instead of the README's."""
        text = text.replace("127.0.0.1:8000", f"127.0.0.1:{self.issuer_port}")
        return text.replace("127.0.0.1:8765", f"127.0.0.1:{self.gateway_port}")


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[Checkout]:
    (tmp_path / ".venv").symlink_to(VENV, target_is_directory=True)
    issuer_port, gateway_port = free_port(), free_port()
    process = subprocess.Popen(
        dev_command(issuer_port, gateway_port),
        cwd=tmp_path,
        env={k: v for k, v in clean_env(tmp_path).items() if k != "WSAUTH_KEYS_DIR"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(process)
    try:
        output.wait_for(r"^demo page: ", timeout=60)
        yield Checkout(tmp_path, issuer_port, gateway_port)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        output.close()


def test_every_readme_snippet_is_run_by_a_test() -> None:
    """A new snippet must be added to a test: here, the browser test, or this list."""
    covered = {
        "sh": ["make run", "wsauth clients add", "wsauth push"],
        "python": ["/api/tokens"],
        "js": ['from "/static/wsauth.js"', 'fetch("/ws-token"'],
        "": ["──cookie──▶"],  # the diagram
    }
    for found in readme_snippets():
        markers = [m for m in covered.get(found.language, []) if m in found.text]
        assert len(markers) == 1, f"README snippet not covered by a test:\n{found.text}"


def test_the_readme_make_block_names_the_makefile_targets() -> None:
    targets = re.findall(r"^(\w+):", (ROOT / "Makefile").read_text(), re.MULTILINE)
    for line in snippet("sh", "make run").splitlines():
        assert line.split()[1] in targets, line


def test_the_readme_client_push_and_revoke_snippets_run_as_shown_beside_wsauth_dev(
    checkout: Checkout,
) -> None:
    (checkout.path / "client.py").write_text(checkout.localize(snippet("python", "/api/tokens")))
    script = "\n".join(
        [
            "set -eu",
            checkout.localize(snippet("sh", "wsauth clients add")),
            ".venv/bin/python client.py",
            checkout.localize(snippet("sh", "wsauth push")),
        ]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSAUTH_")}
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=checkout.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    connected, by_hand, pushed, revoked = done.stdout.splitlines()
    client_id = json.loads(connected)["sub"]
    assert client_id.startswith("c_")
    assert json.loads(connected) == {"type": "welcome", "sub": client_id}
    assert json.loads(by_hand) == {"type": "welcome", "sub": client_id}
    assert re.fullmatch(r"pushed to alice: received by \d+ gateway nodes?", pushed)
    assert re.fullmatch(r"revoked sub=alice: received by 1 gateway node", revoked)
