"""``wsauth gateway`` (run the gateway) and ``wsauth connect`` (a command-line client)."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from wsauth.shared.cli.main import fail, load_cli_settings, settings_options
from wsauth.shared.core.errors import WsAuthError
from wsauth.shared.logs import configure as configure_logging
from wsauth.shared.logs import default_format
from wsauth.ws.client import ClientError, ReconnectingClient, Status
from wsauth.ws.server import run

# ``wsauth connect`` gives up after this many attempts while the issuer never answered.
CONNECT_ATTEMPTS = 5


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port."
)
@click.option(
    "--processes",
    default=1,
    show_default=True,
    type=click.IntRange(0, 1024),
    help="Worker processes sharing the port, each a whole gateway node; 0 = one per CPU.",
)
@settings_options
def gateway(host: str, port: int, processes: int) -> None:
    """Run the WebSocket gateway (verifies tokens with the public keys only)."""
    settings = load_cli_settings()
    configure_logging(settings.log_format or default_format())
    try:
        run(settings, host, port, processes=processes)
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
@click.option(
    "--retry-forever",
    is_flag=True,
    help=f"Keep retrying while the issuer cannot be reached. Default: give up after "
    f"{CONNECT_ATTEMPTS} attempts if it never answered.",
)
def connect(
    issuer_url: str,
    client_id: str,
    client_secret: str,
    gateway_url: str | None,
    count: int | None,
    retry_forever: bool,
) -> None:
    """Connect and print each message (one JSON per line); reconnect with a fresh token.

    Every attempt gets a new token from the issuer. The gateway closing with
    4002 reconnects at once; other closes after a jittered backoff; 4001
    (revoked) or the issuer refusing the credentials (401/403) stops with
    exit status 2, as does an issuer that never answered (see --retry-forever).
    Reconnects are reported on stderr, with the URL that failed.
    """
    client = ReconnectingClient.for_api_client(
        issuer_url,
        client_id,
        client_secret,
        url=gateway_url,
        on_status=_report,
        give_up_after=None if retry_forever else CONNECT_ATTEMPTS,
    )
    try:
        asyncio.run(_print_messages(client, count))
    except ClientError as error:
        hint = (
            "; is it running? (--retry-forever keeps trying)"
            if error.error == "unreachable"
            else ""
        )
        fail(f"{error}{hint}")
    except WsAuthError as error:
        fail(str(error))
    except KeyboardInterrupt:
        sys.exit(130)


async def _print_messages(client: ReconnectingClient, count: int | None) -> None:
    received = 0
    async with client:
        async for message in client:
            text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
            click.echo(_one_line(text))
            received += 1
            if count is not None and received >= count:
                return


def _report(status: Status) -> None:
    """Reconnects on stderr, one line each (stdout carries only the messages)."""
    if status.state == "closed":
        click.echo(
            f"wsauth: connection closed: {status.close_code} {status.reason or ''}", err=True
        )
    elif status.state == "retrying":
        why = f"{status.detail or status.error}; " if status.error else ""
        verb = "retrying" if status.error else "reconnecting"
        click.echo(f"wsauth: {why}{verb} in {status.delay:.1f}s", err=True)


def _one_line(text: str) -> str:
    try:
        return json.dumps(json.loads(text), separators=(",", ":"))
    except ValueError:
        return json.dumps(text)
