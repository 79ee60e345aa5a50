"""``wsauth clients ...`` (CliRunner) and ``wsauth issuer`` (a real process)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from tests.conftest import TEST_SECRET
from tests.issuer.conftest import CSRF, login_json
from wsauth.issuer.clients import ClientStore
from wsauth.shared.cli.main import cli
from wsauth.shared.core.config import Settings
from wsauth.shared.store.keystore import KeyStore


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_clients_add_prints_the_secret_once_and_it_authenticates(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(cli, ["clients", "add", "billing", "--keys-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    client_id = re.search(r"client_id: (\S+)", result.stdout)
    secret = re.search(r"client_secret: (\S+)", result.stdout)
    assert client_id and secret
    assert ClientStore.in_dir(tmp_path).authenticate(client_id.group(1), secret.group(1))


def test_clients_add_json_then_list_json_shows_no_secret(runner: CliRunner, tmp_path: Path) -> None:
    added = runner.invoke(cli, ["clients", "add", "billing", "--json", "--keys-dir", str(tmp_path)])
    assert added.exit_code == 0, added.output
    document = json.loads(added.stdout)
    assert set(document) == {"client_id", "client_secret", "permissions"}
    assert document["permissions"] == []

    listed = runner.invoke(cli, ["clients", "list", "--json", "--keys-dir", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    (entry,) = json.loads(listed.stdout)["clients"]
    assert entry["client_id"] == document["client_id"]
    assert entry["name"] == "billing"
    assert document["client_secret"] not in listed.output

    plain = runner.invoke(cli, ["clients", "list", "--keys-dir", str(tmp_path)])
    assert plain.exit_code == 0
    assert document["client_id"] in plain.stdout
    assert document["client_secret"] not in plain.output


def test_clients_remove_deletes_the_client(runner: CliRunner, tmp_path: Path) -> None:
    client_id, secret = ClientStore.in_dir(tmp_path).add("billing")
    result = runner.invoke(cli, ["clients", "remove", client_id, "--keys-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert not ClientStore.in_dir(tmp_path).authenticate(client_id, secret)
    assert ClientStore.in_dir(tmp_path).all() == []


def test_clients_remove_of_unknown_id_is_one_line_and_exit_2(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(
        cli, ["clients", "remove", "c_0000000000000000", "--keys-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "c_0000000000000000" in result.stderr


def test_issuer_command_with_a_bad_setting_is_one_line_and_exit_2(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(
        cli,
        ["issuer", "--token-ttl", "900", "--keys-dir", str(tmp_path)],
        env={"WSAUTH_SECRET_KEY": TEST_SECRET},
    )
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "WSAUTH_TOKEN_TTL" in result.stderr


def test_issuer_command_without_secret_key_is_one_line_and_exit_2(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(
        cli, ["issuer", "--keys-dir", str(tmp_path)], env={"WSAUTH_SECRET_KEY": None}
    )
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == ["wsauth: error: WSAUTH_SECRET_KEY: is required"]


def test_issuer_command_serves_demo_users_and_stops_cleanly_on_sigterm(
    settings: Settings, key_store: KeyStore
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("WSAUTH_")}
    env.update(
        WSAUTH_SECRET_KEY=TEST_SECRET,
        WSAUTH_REDIS_URL=settings.effective_redis_url,
        WSAUTH_KEYS_DIR=str(key_store.dir),
        PYTHONUNBUFFERED="1",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "wsauth", "issuer", "--demo", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        passwords: dict[str, str] = {}
        url = ""
        while not url:
            line = process.stdout.readline()
            assert line, "the issuer exited before listening"
            if match := re.fullmatch(r"demo user: (\w+) / (\S+)\n", line):
                passwords[match.group(1)] = match.group(2)
            elif match := re.fullmatch(r"issuer listening on (http://127\.0\.0\.1:\d+)\n", line):
                url = match.group(1)
        assert set(passwords) == {"alice", "bob"}

        with requests.Session() as browser:
            assert login_json(browser, url, "bob", passwords["bob"]).status_code == 200
            assert browser.post(f"{url}/ws-token", headers=CSRF).status_code == 200

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("command", [["issuer", "--demo"], ["gateway"]])
def test_issuer_and_gateway_on_a_busy_port_fail_alike_with_one_line_and_exit_2(
    command: list[str], settings: Settings, key_store: KeyStore
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("WSAUTH_")}
    env.update(
        WSAUTH_SECRET_KEY=TEST_SECRET,
        WSAUTH_REDIS_URL=settings.effective_redis_url,
        WSAUTH_KEYS_DIR=str(key_store.dir),
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "wsauth", *command, "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert (done.returncode, done.stdout) == (2, "")
    # Besides the services' JSON log lines (the gateway logs its keyset first): one line.
    lines = [line for line in done.stderr.splitlines() if not line.startswith('{"ts"')]
    assert lines == [f"wsauth: error: cannot listen on 127.0.0.1:{port}: Address already in use"]
    assert not (key_store.dir / "users.json").exists()  # --demo wrote no password


def test_clients_add_export_prints_shell_lines_that_set_the_credentials(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(
        cli, ["clients", "add", "billing", "--export", "--keys-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    shell = subprocess.run(
        [
            "bash",
            "-c",
            result.stdout + 'printf "%s\\n%s\\n" "$WSAUTH_CLIENT_ID" "$WSAUTH_CLIENT_SECRET"',
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    client_id, secret = shell.stdout.splitlines()
    assert ClientStore.in_dir(tmp_path).authenticate(client_id, secret)
    assert "shown only now" in result.stderr


def test_clients_add_allow_mint_grants_the_mint_permission(
    runner: CliRunner, tmp_path: Path
) -> None:
    added = runner.invoke(
        cli, ["clients", "add", "backend", "--allow-mint", "--json", "--keys-dir", str(tmp_path)]
    )
    assert added.exit_code == 0, added.output
    document = json.loads(added.stdout)
    assert document["permissions"] == ["mint"]
    (client,) = ClientStore.in_dir(tmp_path).all()
    assert client.may("mint") and not client.may("push")
