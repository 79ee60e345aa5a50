"""``wsauth push`` (send a message to a user), ``wsauth publish`` (to a channel) and
``wsauth revoke`` (close a user's or a session's connections), straight through Redis: no
issuer needed, only ``WSAUTH_REDIS_URL`` and ``WSAUTH_REDIS_PREFIX``. Without
``WSAUTH_REDIS_URL`` they use the Redis of a running ``wsauth dev`` with the same key store
(:mod:`wsauth.shared.cli.discovery`).

Both print what happened (``--json`` for machines) and exit 0, also when no
gateway was listening; bad input or Redis down is one line on stderr (naming
the Redis URL, without its password) and exit status 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click
import redis

from wsauth.shared.cli.discovery import redis_failure, redis_url_for
from wsauth.shared.cli.main import echo_json, fail, load_cli_settings, settings_options
from wsauth.shared.core.errors import WsAuthError
from wsauth.shared.state.events import publish_message, publish_push, publish_revoke
from wsauth.shared.state.history import History
from wsauth.shared.state.replay import sync_client
from wsauth.shared.state.sessions import Revocation, revoke_session, revoke_subject

_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _nodes(count: int) -> str:
    return f"{count} gateway node{'' if count == 1 else 's'}"


def _json_argument(message: str) -> Any:
    text = sys.stdin.read() if message == "-" else message
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        fail(f"JSON: not valid JSON ({error.msg} at position {error.pos})")


def _deliver(send: Callable[[redis.Redis, str, History | None], int]) -> int:
    """Run ``send(client, prefix, history)`` against the configured Redis, with the
    history of WSAUTH_HISTORY_USERS / WSAUTH_HISTORY_CHANNELS; a failure is one line."""
    settings = load_cli_settings()
    url = redis_url_for(settings)
    client = sync_client(url, timeout=settings.redis_timeout)
    try:
        return send(client, settings.redis_prefix, History.from_settings(settings))
    except WsAuthError as error:
        fail(redis_failure(error, url))
    finally:
        client.close()


@click.command()
@click.argument("sub")
@click.argument("message", metavar="JSON")
@_json_option
@settings_options
def push(sub: str, message: str, as_json: bool) -> None:
    """Send JSON (any JSON value; - reads stdin) to every live connection of user SUB.

    A user with no live connection is not an error: nobody receives it (with
    WSAUTH_HISTORY_USERS it is kept in the user's history for a reconnect).
    """
    data = _json_argument(message)
    nodes = _deliver(
        lambda client, prefix, history: publish_push(client, prefix, sub, data, history=history)
    )
    if as_json:
        echo_json({"sub": sub, "delivered_to_nodes": nodes})
    else:
        click.echo(f"pushed to {sub}: received by {_nodes(nodes)}")


@click.command()
@click.argument("channel")
@click.argument("message", metavar="JSON")
@_json_option
@settings_options
def publish(channel: str, message: str, as_json: bool) -> None:
    """Send JSON (any JSON value; - reads stdin) to every connection that joined CHANNEL.

    A channel nobody joined is not an error: nobody receives it.
    """
    data = _json_argument(message)
    nodes = _deliver(
        lambda client, prefix, history: publish_message(
            client, prefix, channel, data, history=history
        )
    )
    if as_json:
        echo_json({"channel": channel, "delivered_to_nodes": nodes})
    else:
        click.echo(f"published to {channel}: received by {_nodes(nodes)}")


@click.command()
@click.option("--sub", default=None, help="Close every connection of this user (a kick).")
@click.option(
    "--sid",
    default=None,
    help="Revoke this issuer session: its cookie stops minting, its unused tokens are "
    "deleted, its connections closed.",
)
@click.option(
    "--kid",
    default=None,
    help="Close every connection authenticated with this signing key, and make every "
    "gateway process refuse its tokens until it restarts (after a key compromise; "
    "also run `wsauth keys revoke KID`).",
)
@_json_option
@settings_options
def revoke(sub: str | None, sid: str | None, kid: str | None, as_json: bool) -> None:
    """Close live connections with 4001 (revoked) on every gateway node: by --sub, --sid
    and/or --kid."""
    if sub is None and sid is None and kid is None:
        fail("give --sub USER, --sid SESSION or --kid KID (or several)")
    settings = load_cli_settings()
    url = redis_url_for(settings)
    client = sync_client(url, timeout=settings.redis_timeout)
    done: dict[str, Revocation] = {}
    try:
        if sub is not None:
            done["sub"] = revoke_subject(client, settings.redis_prefix, sub)
        if sid is not None:
            done["sid"] = revoke_session(client, settings.redis_prefix, sid)
        if kid is not None:
            done["kid"] = Revocation(nodes=publish_revoke(client, settings.redis_prefix, kid=kid))
    except WsAuthError as error:
        fail(redis_failure(error, url))
    finally:
        client.close()
    if as_json:
        echo_json(
            {
                kind: {
                    "value": {"sub": sub, "sid": sid, "kid": kid}[kind],
                    "delivered_to_nodes": result.nodes,
                    "tokens_deleted": result.tokens_deleted,
                }
                for kind, result in done.items()
            }
        )
        return
    for kind, result in done.items():
        value = {"sub": sub, "sid": sid, "kid": kid}[kind]
        line = f"revoked {kind}={value}: received by {_nodes(result.nodes)}"
        if kind == "sid":
            line += f", {result.tokens_deleted} unused token(s) deleted"
        click.echo(line)
