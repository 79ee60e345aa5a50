"""``wsauth gateway`` (run the gateway) and ``wsauth connect`` (a command-line client)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import click

from shared.cli import fail, load_cli_settings, settings_options
from shared.errors import WsAuthError
from ws.client import connect as open_connection
from ws.client import fetch_token
from ws.server import run

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port."
)
@settings_options
def gateway(host: str, port: int) -> None:
    """Run the WebSocket gateway (verifies tokens with the public keys only)."""
    settings = load_cli_settings()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        run(settings, host, port)
    except OSError as error:
        fail(f"cannot listen on {host}:{port}: {error.strerror or error}")
    except WsAuthError as error:
        fail(str(error))


@click.command()
@click.option(
    "--issuer",
    "issuer_url",
    envvar="WSAUTH_ISSUER",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="Issuer base URL [env: WSAUTH_ISSUER].",
)
@click.option("--client-id", envvar="WSAUTH_CLIENT_ID", required=True, help="API client id.")
@click.option(
    "--client-secret",
    envvar="WSAUTH_CLIENT_SECRET",
    required=True,
    help="API client secret [env: WSAUTH_CLIENT_SECRET; prefer it to the flag].",
)
@click.option(
    "--url",
    "gateway_url",
    default=None,
    help="Gateway WebSocket URL. Default: the `url` the issuer returns with the token.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="Exit after this many messages. Default: run until closed or Ctrl-C.",
)
def connect(
    issuer_url: str,
    client_id: str,
    client_secret: str,
    gateway_url: str | None,
    count: int | None,
) -> None:
    """Get a token from the issuer, connect, print each message (one JSON per line)."""
    try:
        document = fetch_token(issuer_url, client_id, client_secret)
        url = gateway_url or document.get("url") or "ws://127.0.0.1:8765/ws"
        asyncio.run(_print_messages(str(url), document["token"], count))
    except WsAuthError as error:
        fail(str(error))
    except KeyboardInterrupt:
        sys.exit(130)


async def _print_messages(url: str, token: str, count: int | None) -> None:
    connection = await open_connection(url, token)
    received = 0
    async with connection:
        async for message in connection:
            text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
            click.echo(_one_line(text))
            received += 1
            if count is not None and received >= count:
                return
    if connection.close_code not in (None, 1000, 1001):
        fail(f"connection closed: {connection.close_code} {connection.close_reason or ''}".strip())


def _one_line(text: str) -> str:
    try:
        return json.dumps(json.loads(text), separators=(",", ":"))
    except ValueError:
        return json.dumps(text)
