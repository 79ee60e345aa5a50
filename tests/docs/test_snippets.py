"""The snippets of the README and the Python tutorial run as shown, the way a newcomer runs
them: `wsauth dev` in a checkout (here a temporary directory whose `.venv` is this virtualenv,
so `.venv/bin/wsauth` and `./keys` are what the docs say), then the snippets in a second
shell, without any ``WSAUTH_*`` variable. Only the ports differ: the docs' 8000 and 8765
become free ones (in the snippets, in docs/examples, and as ``WSAUTH_ISSUER`` for commands
that default to 8000).

The JavaScript snippets run in Chromium on the demo page: tests/browser/test_readme_js.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.test_dev import Output, clean_env, dev_command
from tests.support.processes import stop_process
from tests.support.welcome import without_ticket
from wsauth.shared.state.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PYTHON_TUTORIAL = ROOT / "docs" / "tutorials" / "python-service.md"
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```$", re.MULTILINE | re.DOTALL)
VENV = Path(sys.executable).parent.parent


@dataclass(frozen=True)
class Snippet:
    language: str
    text: str


def readme_snippets(page: Path = README) -> list[Snippet]:
    found = FENCE.findall(page.read_text())
    return [Snippet(lang, textwrap.dedent(text)) for _indent, lang, text in found]


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
    # What `wsauth dev` prints for other programs: `export WSAUTH_REDIS_URL=...`
    export_line: str = ""

    def localize(self, text: str) -> str:
        """The snippet with this stack's ports instead of the README's."""
        text = text.replace("127.0.0.1:8000", f"127.0.0.1:{self.issuer_port}")
        return text.replace("127.0.0.1:8765", f"127.0.0.1:{self.gateway_port}")


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[Checkout]:
    (tmp_path / ".venv").symlink_to(VENV, target_is_directory=True)
    examples = tmp_path / "docs" / "examples"
    examples.mkdir(parents=True)
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
        export = output.wait_for(r"^\s*(export WSAUTH_REDIS_URL=\S+)$", timeout=10).group(1)
        checkout = Checkout(tmp_path, issuer_port, gateway_port, export)
        for example in (ROOT / "docs" / "examples").glob("*.py"):
            (examples / example.name).write_text(checkout.localize(example.read_text()))
        yield checkout
    finally:
        stop_process(process, timeout=20)
        output.close()


def test_every_readme_snippet_is_run_by_a_test() -> None:
    """A new snippet must be added to a test: here, the browser test, or this list."""
    covered = {
        "sh": ["make run", "wsauth clients add", "wsauth push"],
        "python": ["/api/tokens", "Issuer(load_settings())"],
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
    assert without_ticket(json.loads(connected)) == {"type": "welcome", "sub": client_id}
    assert without_ticket(json.loads(by_hand)) == {"type": "welcome", "sub": client_id}
    assert re.fullmatch(r"pushed to alice: received by \d+ gateway nodes?", pushed)
    assert re.fullmatch(r"revoked sub=alice: received by 1 gateway node", revoked)


def test_the_python_tutorial_shell_steps_run_as_shown_beside_wsauth_dev(
    checkout: Checkout,
) -> None:
    blocks = [s.text for s in readme_snippets(PYTHON_TUTORIAL) if s.language == "sh"]
    script = ["exec 2>&1"]
    for block in blocks:
        script += ["{", checkout.localize(block), '}; echo "### exit $?"']
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSAUTH_")}
    env["WSAUTH_ISSUER"] = f"http://127.0.0.1:{checkout.issuer_port}"  # the default, localized
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=checkout.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    outputs = re.split(r"^### exit (\d+)\n", done.stdout, flags=re.MULTILINE)
    steps = list(zip(outputs[1::2], outputs[0::2], strict=False))
    assert len(steps) == len(blocks) == 5, done.stdout
    (registered, shown), (curl, answer), (run, connected), (wrong, refused), (cli, welcome) = steps
    assert registered == "0", shown
    notice, client_id = shown.splitlines()
    assert notice == "The secret is shown only now; wsauth keeps just its SHA-256."
    assert re.fullmatch(r"c_[0-9a-f]{16}", client_id)
    assert curl == "0"
    grant = json.loads(answer)
    assert (grant["expires_in"], grant["url"]) == (30, f"ws://127.0.0.1:{checkout.gateway_port}/ws")
    assert (run, connected) == ("0", f"connected as {client_id}\n")
    assert (wrong, refused) == ("1", "issuer refused: 401 not_authenticated\n")
    assert (cli, without_ticket(json.loads(welcome))) == (
        "0",
        {"type": "welcome", "sub": client_id},
    )


def test_the_readme_issuer_snippet_mints_a_token_that_connects_once_beside_wsauth_dev(
    checkout: Checkout,
) -> None:
    # As shown, then the token used twice: once it connects, then it is spent.
    program = snippet("python", "Issuer(load_settings())") + textwrap.dedent(
        """
        import asyncio, json, websockets

        async def use(token):
            headers = {"Authorization": f"Bearer {token}"}
            try:
                async with websockets.connect(grant.url, additional_headers=headers) as socket:
                    return json.loads(await socket.recv())
            except websockets.InvalidStatus as refused:
                return refused.response.status_code

        print(json.dumps([asyncio.run(use(grant.token)), asyncio.run(use(grant.token))]))
        """
    )
    (checkout.path / "mint.py").write_text(program)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSAUTH_")}
    done = subprocess.run(
        ["bash", "-c", f"{checkout.export_line}\n.venv/bin/python mint.py"],
        cwd=checkout.path,
        env={
            **env,
            "WSAUTH_ISSUER": f"http://127.0.0.1:{checkout.issuer_port}",
            "WSAUTH_GATEWAY_URL": f"ws://127.0.0.1:{checkout.gateway_port}/ws",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    welcome, second = json.loads(done.stdout)
    assert without_ticket(welcome) == {"type": "welcome", "sub": "alice"}
    assert second == 401
