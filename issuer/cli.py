"""``wsauth issuer`` (run the issuer) and ``wsauth clients`` (manage API clients).

``wsauth issuer`` serves the app with werkzeug's threaded server, which is
fine on loopback and for ``wsauth dev``. In production run the same app
under a real WSGI server, e.g.::

    gunicorn -w 2 -b 127.0.0.1:8000 'wsauth.issuer:create_app()'

with the settings in ``WSAUTH_*`` variables. Every worker reads the key
store and the client file itself and follows their changes, so workers
need no coordination.
"""

from __future__ import annotations

import secrets
import shlex
import signal
import socket
import threading
from types import FrameType

import click
from flask import Flask
from werkzeug.serving import LISTEN_QUEUE

from wsauth.issuer import create_app
from wsauth.issuer.clients import MINT, PUBLISH, PUSH, ClientStore, ClientStoreError
from wsauth.issuer.serving import make_issuer_server
from wsauth.issuer.state import get_state
from wsauth.issuer.users import UserStore
from wsauth.shared.cli.main import echo_json, fail, load_cli_settings, settings_options
from wsauth.shared.logs import configure as configure_logging
from wsauth.shared.logs import default_format
from wsauth.shared.state.redis_conn import redact

DEMO_USERS = ("alice", "bob")

_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening, for werkzeug's ``fd=``.

    Bound here, not by werkzeug, whose own bind failure prints two lines and
    exits 1; ``wsauth issuer`` fails as ``wsauth gateway`` does (one line, status 2).

    Raises:
        OSError: the address is taken, not local, or not allowed.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(LISTEN_QUEUE)
    except OSError:
        listener.close()
        raise
    return listener


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port."
)
@click.option(
    "--demo",
    is_flag=True,
    help="Create the demo users alice and bob with fresh random passwords and print them.",
)
@settings_options
def issuer(host: str, port: int, demo: bool) -> None:
    """Run the token issuer (login, /ws-token, /api/tokens, JWKS, demo page).

    Production: gunicorn -w 2 -b 127.0.0.1:8000 'wsauth.issuer:create_app()'.
    """
    settings = load_cli_settings()
    configure_logging(settings.log_format or default_format())
    app = create_app(settings)
    try:
        listener = listening_socket(host, port)
    except OSError as error:
        get_state(app).close()
        fail(f"cannot listen on {host}:{port}: {error.strerror or error}")
    with listener:  # werkzeug serves a duplicate of it
        server = make_issuer_server(
            host, port, app, header_timeout=settings.header_timeout, fd=listener.fileno()
        )
    if demo:  # only now: a start that fails leaves the demo users' passwords as they were
        users = UserStore.in_dir(settings.keys_dir)
        for name in DEMO_USERS:
            password = secrets.token_urlsafe(12)
            users.set_password(name, password)
            click.echo(f"demo user: {name} / {password}")
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    serving = threading.Thread(target=server.serve_forever, name="issuer-http", daemon=True)
    serving.start()
    shown_host = f"[{host}]" if ":" in host else host
    click.echo(f"issuer listening on http://{shown_host}:{server.port}")
    for warning in startup_warnings(app):
        click.echo(f"warning: {warning}", err=True)
    try:
        while not stop.wait(0.5):
            if not serving.is_alive():  # pragma: no cover - the server loop died
                fail("the HTTP server stopped unexpectedly")
    finally:
        server.shutdown()
        serving.join(timeout=10)
        server.server_close()
        get_state(app).close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("issuer stopped")


def startup_warnings(app: Flask) -> list[str]:
    """One line for each thing the issuer needs but lacks at start (docs/howto/deploy.md).

    The issuer starts anyway: ``/readyz`` answers 503 and the token endpoints
    503 until Redis answers and a signing key exists, both picked up without
    a restart.
    """
    state = get_state(app)
    problems = []
    if not state.signer.redis_ok():
        problems.append(
            f"Redis at {redact(state.settings.effective_redis_url)} does not answer: "
            "every token request fails with 503 redis_unavailable until it does"
        )
    if not state.signer.has_signing_key():
        problems.append(
            f"no current signing key in {state.settings.keys_dir}: every token request "
            "fails with 503 no_signing_key until `wsauth keys generate` makes one"
        )
    return problems


@click.group()
def clients() -> None:
    """Manage API clients (HTTP Basic credentials for POST /api/tokens, /api/push, /api/publish)."""


def _store() -> ClientStore:
    return ClientStore.in_dir(load_cli_settings().keys_dir)


@clients.command("add")
@click.argument("name")
@click.option(
    "--allow-push",
    is_flag=True,
    help="Also let the client publish to any user with POST /api/push.",
)
@click.option(
    "--allow-mint",
    is_flag=True,
    help='Also let the client get tokens for any user: POST /api/tokens with {"sub": ...}.',
)
@click.option(
    "--allow-publish",
    is_flag=True,
    help="Also let the client publish to any channel with POST /api/publish.",
)
@_json_option
@click.option(
    "--export",
    "as_export",
    is_flag=True,
    help="Print shell lines `export WSAUTH_CLIENT_ID=... WSAUTH_CLIENT_SECRET=...`, "
    'for eval "$(wsauth clients add NAME --export)"; `wsauth connect` reads them.',
)
@settings_options
def add_client(
    name: str,
    allow_push: bool,
    allow_mint: bool,
    allow_publish: bool,
    as_json: bool,
    as_export: bool,
) -> None:
    """Register a client called NAME; print its id and secret (shown only this once)."""
    if as_json and as_export:
        fail("give --json or --export, not both")
    permissions = frozenset(
        permission
        for permission, granted in (
            (PUSH, allow_push),
            (MINT, allow_mint),
            (PUBLISH, allow_publish),
        )
        if granted
    )
    try:
        client_id, secret = _store().add(name, permissions=permissions)
    except ClientStoreError as error:
        fail(str(error))
    if as_json:
        echo_json(
            {
                "client_id": client_id,
                "client_secret": secret,
                "permissions": sorted(permissions),
            }
        )
    elif as_export:
        click.echo(f"export WSAUTH_CLIENT_ID={shlex.quote(client_id)}")
        click.echo(f"export WSAUTH_CLIENT_SECRET={shlex.quote(secret)}")
        click.echo("The secret is shown only now; wsauth keeps just its SHA-256.", err=True)
    else:
        click.echo(f"client_id: {client_id}")
        click.echo(f"client_secret: {secret}")
        if permissions:
            click.echo(f"permissions: {', '.join(sorted(permissions))}")
        click.echo("The secret is shown only now; wsauth keeps just its SHA-256.", err=True)


@clients.command("list")
@_json_option
@settings_options
def list_clients(as_json: bool) -> None:
    """List the clients (never their secrets)."""
    try:
        entries = _store().all()
    except ClientStoreError as error:
        fail(str(error))
    if as_json:
        echo_json(
            {
                "clients": [
                    {
                        "client_id": c.client_id,
                        "name": c.name,
                        "created": c.created,
                        "permissions": sorted(c.permissions),
                    }
                    for c in entries
                ]
            }
        )
        return
    if not entries:
        click.echo("no clients")
    for client in entries:
        granted = f"  [{', '.join(sorted(client.permissions))}]" if client.permissions else ""
        click.echo(f"{client.client_id}  {client.name}{granted}")


@clients.command("remove")
@click.argument("client_id")
@settings_options
def remove_client(client_id: str) -> None:
    """Delete the client CLIENT_ID: its secret stops working at once."""
    try:
        _store().remove(client_id)
    except ClientStoreError as error:
        fail(str(error))
    click.echo(f"removed {client_id}")
