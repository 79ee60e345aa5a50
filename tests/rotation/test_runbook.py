"""docs/howto/key-rotation.md runs, command by command, against a live stack.

How the runbook is read:

- A runnable block is a fenced ``sh`` block right after an HTML comment
  ``<!-- runbook: NAME -->``. Its lines are ``$ command`` (a trailing ``\\``
  continues it on the next line), ``# comment`` or blank; anything else
  fails the test, so no output shown in a runnable block can go stale.
- The blocks must be, in order, :data:`SECTIONS`. Every fenced block of the
  page is a runbook block, so no command is shown that is not run.
- ``setup`` holds only ``export NAME=value`` lines, one per name of
  :data:`SETUP`. The test **substitutes the values**: the key store of the
  test stack, the timing rule's numbers made small (C = ``RULE_CACHE`` = 2 s,
  T = 2 s, L = 1 s; the servers refresh every ``SERVER_CACHE`` = 1 s, within
  C as the rule requires), and the loopback URLs of the running issuer and
  gateway. A renamed or missing variable fails the test.
- The ``crontab`` block (a ``cron`` block, not run by bash) must set a
  ``PATH`` and the same ``WSAUTH_*`` variables as ``setup`` (but the Redis
  URL, which rotation does not use) and run a command that a runnable block
  runs; and its entry runs as written, with nothing but its own variables.
- The exit statuses table lists every command the runbook relies on, and
  the CLI gives each status as the table says.

All runnable blocks then run in order in ONE ``bash -euo pipefail`` process
(with the virtualenv's ``wsauth`` first on ``PATH``, ``curl`` and ``jq`` from
the system), so a command that fails, or that the code no longer knows,
fails the test. Meanwhile two clients get tokens from ``POST /api/tokens``
and connect through the gateway nonstop: through ``routine`` and ``cron``
not one handshake may fail; after ``emergency`` starts, the only failures
allowed are the documented ones: ``401 unknown_kid`` for a key promoted with
``--force`` before the gateway has fetched it, and ``401 key_revoked`` for a
token of the bad key used as ``wsauth revoke --kid`` runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.rotation.conftest import LEEWAY, RULE_CACHE, TOKEN_TTL, Stack, Traffic

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "howto" / "key-rotation.md"
SECTIONS = ["setup", "routine", "crontab", "cron", "emergency"]
SETUP = [
    "WSAUTH_KEYS_DIR",
    "WSAUTH_JWKS_CACHE",
    "WSAUTH_TOKEN_TTL",
    "WSAUTH_LEEWAY",
    "WSAUTH_REDIS_URL",
    "ISSUER",
    "GATEWAY",
]
MARKER = "@@runbook-section "

_BLOCK = re.compile(
    r"<!-- runbook: (?P<name>[a-z]+) -->\n```(?P<lang>\w+)\n(?P<body>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
_ANY_BLOCK = re.compile(r"(?P<before>.*)\n```\w*\n(?P<body>.*?)^```$", re.MULTILINE)
_EXPORT = re.compile(r"export (?P<name>[A-Z_]+)=(?P<value>\S+)")


@dataclass
class Block:
    name: str
    lang: str
    lines: list[str]


def runbook_blocks(text: str) -> list[Block]:
    return [Block(m["name"], m["lang"], m["body"].splitlines()) for m in _BLOCK.finditer(text)]


def commands(block: Block) -> list[str]:
    """The ``$ `` commands of a runnable block, continuations joined."""
    found: list[str] = []
    continued = False
    for line in block.lines:
        if continued:
            found[-1] += "\n" + line
        elif line.startswith("$ "):
            found.append(line[2:])
        elif line.strip() and not line.startswith("# "):
            raise AssertionError(f"runbook {block.name}: not a command or comment: {line!r}")
        continued = line.endswith("\\")
    return found


def setup_exports(block: Block) -> dict[str, str]:
    exports = {}
    for command in commands(block):
        match = _EXPORT.fullmatch(command)
        assert match, f"runbook setup: only `export NAME=value` lines, got {command!r}"
        exports[match["name"]] = match["value"]
    return exports


def script(blocks: list[Block], values: dict[str, str]) -> str:
    """One bash script: the setup with the test's values, then every runnable block."""
    lines = ["PS4='+ '", "set -x"]
    for block in blocks:
        lines.append(f"echo {shlex.quote(MARKER + block.name)}")
        if block.name == "setup":
            exports = setup_exports(block)
            assert list(exports) == SETUP, f"the runbook's setup exports {list(exports)}"
            lines += [f"export {name}={shlex.quote(values[name])}" for name in exports]
        elif block.lang == "sh":
            lines += commands(block)
    return "\n".join(lines) + "\n"


def test_the_runbook_has_its_sections_and_shows_no_command_that_is_not_run() -> None:
    text = RUNBOOK.read_text()
    blocks = runbook_blocks(text)
    assert [block.name for block in blocks] == SECTIONS
    for match in _ANY_BLOCK.finditer(text):
        if not match["before"].startswith("<!-- runbook: "):
            # Diagrams and formulas only: a command shown must be a command run.
            assert not re.search(r"^\$ |wsauth |curl ", match["body"], re.MULTILINE), match[0]
    assert [block.lang for block in blocks] == ["sh", "sh", "cron", "sh", "sh"]
    run = [command for block in blocks if block.lang == "sh" for command in commands(block)]
    assert sum("wsauth keys" in command for command in run) >= 20

    variables, entry = crontab(blocks)
    setup = setup_exports(blocks[0])
    path = variables.pop("PATH")
    assert path.endswith(":/usr/bin:/bin"), path  # the installation's bin, then cron's own
    assert variables == {
        name: value
        for name, value in setup.items()
        if name.startswith("WSAUTH_") and name != "WSAUTH_REDIS_URL"
    }
    cron_command = entry.split(maxsplit=5)[5].split(">>")[0].strip()
    assert any(command.startswith(cron_command) for command in run), cron_command


def crontab(blocks: list[Block]) -> tuple[dict[str, str], str]:
    """The crontab block's variables and its one entry."""
    block = next(block for block in blocks if block.name == "crontab")
    *variables, entry = [line for line in block.lines if line.strip()]
    return dict(line.split("=", 1) for line in variables), entry


def test_the_crontab_entry_runs_as_written_with_only_its_own_environment(
    tmp_path: Path,
) -> None:
    variables, entry = crontab(runbook_blocks(RUNBOOK.read_text()))
    # The places of this machine for the ones of the example: the installation's
    # bin directory, the key store and the log file. Nothing else changes.
    installed, *rest = variables["PATH"].split(":")
    env = dict(variables)
    env["PATH"] = ":".join([str(Path(sys.executable).parent), *rest])
    env["WSAUTH_KEYS_DIR"] = str(tmp_path / "keys")
    log = tmp_path / "rotate.log"
    command = entry.split(maxsplit=5)[5]
    assert ">>/var/log/wsauth/rotate.log 2>&1" in command
    command = command.replace("/var/log/wsauth/rotate.log", str(log))
    assert installed.startswith("/") and "wsauth" in installed
    # As cron runs it: /bin/sh -c, with the crontab's variables and HOME/LOGNAME/SHELL only.
    env.update(HOME=str(tmp_path), LOGNAME="wsauth", SHELL="/bin/sh")
    for _ in range(3):  # a first key, a next key, then a run that only waits
        done = subprocess.run(["/bin/sh", "-c", command], env=env, timeout=60, check=False)
        assert done.returncode == 0, log.read_text()
    text, decoder, runs = log.read_text(), json.JSONDecoder(), []
    position = 0
    while text[position:].strip():  # one JSON document per run, one after the other
        document, end = decoder.raw_decode(text, len(text) - len(text[position:].lstrip()))
        runs.append(document)
        position = end
    assert [run["changed"] for run in runs] == [True, True, False]
    assert runs[2]["promote_after"] is not None


EXIT_TABLE = re.compile(r"<!-- exit-statuses -->\n(?P<table>(?:\|.*\|\n)+)")


def _exit_table() -> dict[str, tuple[str, str]]:
    match = EXIT_TABLE.search(RUNBOOK.read_text())
    assert match, "the exit statuses table"
    rows = {}
    for line in match["table"].splitlines()[2:]:
        command, zero, two = (cell.strip() for cell in line.strip("|").split("|"))
        rows[command.strip("`")] = (zero, two)
    return rows


def test_every_exit_status_in_the_table_is_the_clis(tmp_path: Path, redis_url: str) -> None:
    table = _exit_table()
    store = tmp_path / "keys"
    env = {name: value for name, value in os.environ.items() if not name.startswith("WSAUTH_")}
    env.update(WSAUTH_KEYS_DIR=str(store), WSAUTH_REDIS_URL=redis_url, WSAUTH_JWKS_CACHE="1")
    wsauth = str(Path(sys.executable).with_name("wsauth"))

    def status(*args: str) -> int:
        done = subprocess.run(
            [wsauth, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode == 2:
            assert done.stderr.count("\n") == 1, (args, done.stderr)
        return done.returncode

    checked: dict[str, tuple[int, int]] = {}
    first = subprocess.run(
        [wsauth, "keys", "generate", "-q"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    nxt = subprocess.run(
        [wsauth, "keys", "generate", "-q"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    checked["wsauth keys generate"] = (0, status("keys", "generate"))  # a next key exists
    checked["wsauth keys promote KID"] = (
        status("keys", "promote", nxt, "--force"),
        status("keys", "promote", first),  # now retiring: not a next key
    )
    checked["wsauth keys retire [KID]"] = (
        status("keys", "retire"),
        status("keys", "retire", first),
    )
    checked["wsauth keys revoke KID"] = (
        status("keys", "revoke", first),
        status("keys", "revoke", first),
    )
    checked["wsauth keys rotate"] = (status("keys", "rotate"), 0)
    (store / "keyset.json").write_text("{")
    checked["wsauth keys rotate"] = (checked["wsauth keys rotate"][0], status("keys", "rotate"))
    checked["wsauth keys gateways"] = (0, status("keys", "gateways"))  # none runs here
    checked["wsauth revoke --kid KID"] = (status("revoke", "--kid", nxt), status("revoke"))
    # 0 of `keys gateways` needs running gateways: test_every_gateway_process.py shows it.
    assert set(checked) == set(table), "the table and this test list the same commands"
    assert all(codes == (0, 2) for codes in checked.values()), checked


def test_the_runbook_parser_refuses_output_lines_in_a_runnable_block() -> None:
    block = Block("routine", "sh", ["$ wsauth keys list", "abc  EdDSA  current"])
    with pytest.raises(AssertionError, match="not a command"):
        commands(block)


# One variant: the commands do not depend on the gateway's source, and both
# sources go through the same steps in test_rotation_under_load.py.
@pytest.mark.parametrize("stack", ["url"], indirect=True)
def test_every_command_of_the_runbook_runs_with_no_failed_handshake(
    stack: Stack, tmp_path: Path
) -> None:
    values = {
        "WSAUTH_KEYS_DIR": str(stack.keys_dir),
        "WSAUTH_JWKS_CACHE": str(RULE_CACHE),
        "WSAUTH_TOKEN_TTL": str(TOKEN_TTL),
        "WSAUTH_LEEWAY": str(LEEWAY),
        "WSAUTH_REDIS_URL": stack.settings.effective_redis_url,
        "ISSUER": stack.issuer_url,
        "GATEWAY": stack.gateway.http_url,
    }
    path = tmp_path / "runbook.sh"
    path.write_text(script(runbook_blocks(RUNBOOK.read_text()), values))
    env = {name: value for name, value in os.environ.items() if not name.startswith("WSAUTH_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"

    started: dict[str, float] = {}
    output: list[str] = []
    with Traffic(stack) as traffic:
        process = subprocess.Popen(
            ["bash", "-euo", "pipefail", str(path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                output.append(line)
                if line.startswith(MARKER):
                    started[line[len(MARKER) :].strip()] = time.monotonic()

        reader = threading.Thread(target=read, name="runbook-output")
        reader.start()
        try:
            returncode = process.wait(timeout=240)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            reader.join(timeout=10)
            process.stdout.close()

    transcript = "".join(output)
    assert returncode == 0, f"the runbook failed:\n{transcript}"
    assert list(started) == ["setup", "routine", "crontab", "cron", "emergency"]
    before = [what for at, what in traffic.failures if at < started["emergency"]]
    assert before == [], transcript
    during = {what for at, what in traffic.failures if at >= started["emergency"]}
    assert during <= {"401 unknown_kid", "401 key_revoked"}
    assert traffic.total() >= 20
    assert len(traffic.accepted) >= 4  # the first key, the routine one, cron's, emergency's
