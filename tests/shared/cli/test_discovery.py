"""Which Redis `wsauth push`/`wsauth revoke` use (the run file of `wsauth dev`), and how a Redis
failure names its URL. Against the session's real Redis; an unreachable Redis is a free port
that nothing listens on."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import redis
from click.testing import CliRunner, Result

from wsauth.shared.cli.discovery import (
    RUN_FILE,
    DevRun,
    read_run_file,
    redis_url_for,
    remove_run_file,
    write_run_file,
)
from wsauth.shared.cli.main import cli
from wsauth.shared.core.config import load_settings
from wsauth.shared.state.events import channel
from wsauth.shared.state.redis_server import free_port


def wsauth(keys_dir: Path, *args: str, redis_url: str | None = None) -> Result:
    env = {"WSAUTH_REDIS_URL": redis_url, "WSAUTH_KEYS_DIR": str(keys_dir)}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)


def test_the_run_file_is_private_and_read_back_while_its_process_runs(tmp_path: Path) -> None:
    write_run_file(tmp_path, DevRun(os.getpid(), "redis://127.0.0.1:7000/0"))
    assert stat.S_IMODE((tmp_path / RUN_FILE).stat().st_mode) == 0o600
    assert read_run_file(tmp_path) == DevRun(os.getpid(), "redis://127.0.0.1:7000/0")


def test_a_run_file_whose_process_is_gone_or_that_is_garbage_is_ignored(tmp_path: Path) -> None:
    write_run_file(tmp_path, DevRun(dead_pid(), "redis://127.0.0.1:7000/0"))
    assert read_run_file(tmp_path) is None
    settings = load_settings(env={"WSAUTH_KEYS_DIR": str(tmp_path)})
    assert redis_url_for(settings) == "redis://127.0.0.1:6379/0"
    for garbage in (b"{", b"[]", b'{"pid": "1", "redis_url": "redis://x"}', b'{"pid": true}'):
        (tmp_path / RUN_FILE).write_bytes(garbage)
        assert read_run_file(tmp_path, alive=lambda _pid: True) is None


def test_only_the_process_that_wrote_the_run_file_removes_it(tmp_path: Path) -> None:
    write_run_file(tmp_path, DevRun(os.getpid(), "redis://127.0.0.1:7000/0"))
    remove_run_file(tmp_path, os.getpid() + 1)
    assert (tmp_path / RUN_FILE).exists()
    remove_run_file(tmp_path, os.getpid())
    assert not (tmp_path / RUN_FILE).exists()


def test_redis_url_setting_wins_over_the_run_file(tmp_path: Path) -> None:
    write_run_file(tmp_path, DevRun(os.getpid(), "redis://127.0.0.1:7000/0"))
    env = {"WSAUTH_KEYS_DIR": str(tmp_path)}
    assert redis_url_for(load_settings(env=env)) == "redis://127.0.0.1:7000/0"
    env["WSAUTH_REDIS_URL"] = "redis://127.0.0.1:7001/2"
    assert redis_url_for(load_settings(env=env)) == "redis://127.0.0.1:7001/2"


def test_revoke_without_redis_url_uses_the_redis_of_the_running_dev_stack(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    write_run_file(tmp_path, DevRun(os.getpid(), redis_url))
    listener = redis_client.pubsub()
    listener.subscribe(channel("wsauth:"))
    try:
        assert listener.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
        result = wsauth(tmp_path, "revoke", "--sub", "carol")
        assert (result.exit_code, result.stderr) == (0, ""), result.output
        assert result.stdout == "revoked sub=carol: received by 1 gateway node\n"
        event = listener.get_message(timeout=5)
        assert event is not None and "carol" in event["data"]
    finally:
        listener.close()


def test_push_with_redis_down_names_the_url_it_tried_from_the_run_file(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    write_run_file(tmp_path, DevRun(os.getpid(), url))
    result = wsauth(tmp_path, "push", "alice", '{"text": "hello"}')
    assert result.exit_code == 2
    assert result.stderr == f"wsauth: error: redis_unavailable: ConnectionError (Redis at {url})\n"


def test_redis_unavailable_names_the_url_without_its_password(tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://worker:s3cret-pass@127.0.0.1:{port}/0"
    for command in (["push", "alice", "1"], ["revoke", "--sub", "alice"]):
        result = wsauth(tmp_path, *command, redis_url=url)
        assert result.exit_code == 2, command
        assert result.stderr == (
            "wsauth: error: redis_unavailable: ConnectionError "
            f"(Redis at redis://worker:***@127.0.0.1:{port}/0)\n"
        )
        assert "s3cret" not in result.output
