"""``wsauth dev``: the whole stack on loopback, for trying wsauth out.

It starts, each as its own process (as in production, so nothing here
imports ``issuer`` or ``ws``):

1. an embedded ``redis-server`` (unless ``WSAUTH_REDIS_URL`` is set),
2. the issuer (``wsauth issuer --demo``) on 127.0.0.1:8000, which creates the
   demo users and prints their passwords,
3. the gateway (``wsauth gateway``) on 127.0.0.1:8765.

It generates a signing key when the key store is empty and a session secret
for this run. Ctrl-C (or SIGTERM) stops the children by PID, then Redis.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from types import FrameType

import click

from wsauth.shared.cli.main import fail, load_cli_settings, settings_options
from wsauth.shared.core.config import SETTINGS, Settings
from wsauth.shared.state.redis_server import redis_for
from wsauth.shared.store.keystore import KeyStore


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
    """Run Redis, the issuer, the gateway and the demo page on 127.0.0.1."""
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

    store = KeyStore(settings.keys_dir)
    if not store.records():
        record = store.generate("EdDSA", now=int(time.time()))
        click.echo(f"generated signing key {record.kid} in {settings.keys_dir}")

    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    children: list[subprocess.Popen[bytes]] = []
    try:
        with redis_for(settings.redis_url) as redis_url:
            if not settings.redis_url:
                click.echo(f"embedded Redis on {redis_url}")
            env = _child_env(settings, redis_url, secret)
            children.append(
                subprocess.Popen(  # noqa: S603 - our own console script
                    _command("issuer", "--demo", "--port", str(issuer_port)), env=env
                )
            )
            children.append(
                subprocess.Popen(  # noqa: S603
                    _command("gateway", "--port", str(gateway_port)), env=env
                )
            )
            click.echo(f"demo page: {settings.issuer}/  (Ctrl-C stops everything)")
            while not stopping:
                if any(child.poll() is not None for child in children):
                    _stop(children)
                    fail("a child process exited; stopped the stack")
                time.sleep(0.2)
    finally:
        _stop(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("stopped")


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
