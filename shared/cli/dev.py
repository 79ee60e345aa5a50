"""``wsauth dev``: the whole stack on loopback, for trying wsauth out.

It starts, each as its own process (as in production, so nothing here
imports ``issuer`` or ``ws``):

1. an embedded ``redis-server`` (unless ``WSAUTH_REDIS_URL`` is set),
2. the gateway (``wsauth gateway``) on 127.0.0.1:8765,
3. the issuer (``wsauth issuer --demo``) on 127.0.0.1:8000, which creates the
   demo users and prints their passwords.

It generates a signing key when the key store is empty and a session secret
for this run. Ctrl-C (or SIGTERM) stops the children by PID, then Redis.

A start that fails changes nothing: both ports are checked before any file is
written, the gateway starts first, and the issuer, which writes the demo
users' passwords, starts once the gateway listens and writes them only once
it listens itself. Once both listen, the stack records its Redis URL in the
run file ``{keys dir}/dev-run.json`` for the other ``wsauth`` commands
(:mod:`wsauth.shared.cli.discovery`) and removes it when it stops.
"""

from __future__ import annotations

import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import click

from wsauth.shared.cli.discovery import (
    DevRun,
    read_run_file,
    remove_run_file,
    run_file,
    write_run_file,
)
from wsauth.shared.cli.main import fail, load_cli_settings, settings_options
from wsauth.shared.core.config import SETTINGS, Settings
from wsauth.shared.state.redis_server import redis_for
from wsauth.shared.store.keystore import KeyStore

HOST = "127.0.0.1"
# How long a child may take to listen before the stack gives up.
START_TIMEOUT = 60.0


def _child_env(settings: Settings, redis_url: str, secret: str) -> dict[str, str]:
    """The children's environment: every effective setting as a ``WSAUTH_*`` variable."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("WSAUTH_")}
    for setting in SETTINGS:
        value = getattr(settings, setting.name)
        if value is None:
            continue
        if isinstance(value, tuple):
            value = ",".join(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[setting.env] = str(value)
    env["WSAUTH_REDIS_URL"] = redis_url
    env["WSAUTH_SECRET_KEY"] = secret
    env["WSAUTH_KEYS_DIR"] = str(settings.keys_dir.resolve())
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "wsauth", *args]


@click.command()
@click.option("--issuer-port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--gateway-port", default=8765, show_default=True, type=click.IntRange(1, 65535))
@settings_options
def dev(issuer_port: int, gateway_port: int) -> None:
    """Run Redis, the issuer, the gateway and the demo page on 127.0.0.1.

    Without WSAUTH_REDIS_URL it runs an embedded Redis on a free port and,
    while the stack runs, records its URL in {keys dir}/dev-run.json, where
    `wsauth push` and `wsauth revoke` in another shell find it. A busy port
    stops it before it changes anything (one line, exit status 2).
    """
    ctx = click.get_current_context()
    flags = (ctx.obj or {}).get("settings_flags", {})
    defaults: dict[str, str] = {}
    if "issuer" not in flags and "WSAUTH_ISSUER" not in os.environ:
        defaults["issuer"] = f"http://127.0.0.1:{issuer_port}"
    if "gateway_url" not in flags and "WSAUTH_GATEWAY_URL" not in os.environ:
        defaults["gateway_url"] = f"ws://127.0.0.1:{gateway_port}/ws"
    if "allowed_origins" not in flags and "WSAUTH_ALLOWED_ORIGINS" not in os.environ:
        defaults["allowed_origins"] = (
            f"http://127.0.0.1:{issuer_port},http://localhost:{issuer_port}"
        )
    settings = load_cli_settings(ctx, **{**defaults, **flags})
    secret = settings.secret_key.reveal() if settings.secret_key else secrets.token_urlsafe(48)
    # A start that fails changes nothing: the ports are checked before any file is written,
    # and the issuer writes the demo users only once it listens (after the gateway does).
    for port in (issuer_port, gateway_port):
        _check_free(port, settings.keys_dir)

    store = KeyStore(settings.keys_dir)
    if not store.records():
        record = store.generate("EdDSA", now=int(time.time()))
        click.echo(f"generated signing key {record.kid} in {settings.keys_dir}")

    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with redis_for(settings.redis_url) as redis_url:
            if not settings.redis_url:
                click.echo(f"embedded Redis on {redis_url}")
            _run_stack(settings, redis_url, secret, issuer_port, gateway_port, lambda: stopping)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("stopped")


def _run_stack(
    settings: Settings,
    redis_url: str,
    secret: str,
    issuer_port: int,
    gateway_port: int,
    stopping: Callable[[], bool],
) -> None:
    """Start the gateway, then the issuer; serve until ``stopping()``; stop both (before
    their Redis stops)."""
    env = _child_env(settings, redis_url, secret)
    commands = {
        "gateway": (_command("gateway", "--port", str(gateway_port)), gateway_port),
        "issuer": (_command("issuer", "--demo", "--port", str(issuer_port)), issuer_port),
    }
    children: dict[str, subprocess.Popen[bytes]] = {}
    wrote_run_file = False
    try:
        for name, (command, port) in commands.items():
            children[name] = subprocess.Popen(command, env=env)  # noqa: S603 - our own script
            if not _wait_serving(children[name], port, stopping):
                if children[name].poll() is None and not stopping():
                    _stop(list(children.values()))
                    fail(
                        f"the {name} did not answer within {START_TIMEOUT:.0f} s; stopped the stack"
                    )
                break
        if not stopping() and all(child.poll() is None for child in children.values()):
            write_run_file(settings.keys_dir, DevRun(os.getpid(), redis_url))
            wrote_run_file = True
            click.echo(f"demo page: {settings.issuer}/  (Ctrl-C stops everything)")
            if not settings.redis_url:
                click.echo(
                    f"wsauth push and wsauth revoke find this Redis through "
                    f"{run_file(settings.keys_dir)}; for other programs:\n"
                    f"  export WSAUTH_REDIS_URL={redis_url}"
                )
        while not stopping():
            exited = [name for name, child in children.items() if child.poll() is not None]
            if exited:
                _stop(list(children.values()))
                fail(f"the {exited[0]} exited; stopped the stack")
            time.sleep(0.2)
    finally:
        _stop(list(children.values()))
        if wrote_run_file:
            remove_run_file(settings.keys_dir, os.getpid())


def _check_free(port: int, keys_dir: Path) -> None:
    """Fail (one line, status 2) unless 127.0.0.1:``port`` can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as error:
            running = read_run_file(keys_dir)
            hint = f" (a wsauth dev runs with this key store: PID {running.pid})" if running else ""
            fail(f"cannot listen on {HOST}:{port}: {error.strerror or error}{hint}")


def _wait_serving(child: subprocess.Popen[bytes], port: int, stopping: Callable[[], bool]) -> bool:
    """Wait until ``child`` answers HTTP on ``port``; False if it exited or we stop.

    An answer, not only an accepted connection: the issuer listens before it
    writes the demo users, and serves only once they are written.
    """
    deadline = time.monotonic() + START_TIMEOUT
    while child.poll() is None and not stopping() and time.monotonic() < deadline:
        connection = http.client.HTTPConnection(HOST, port, timeout=2)
        try:
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            return True
        except (OSError, http.client.HTTPException):
            time.sleep(0.05)
        finally:
            connection.close()
    return False


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every child by PID, wait, SIGKILL what is left after 10 s."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + 10
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
