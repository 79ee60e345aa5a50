"""``wsauth inbox ...``: read what clients ``send``, from the ``{prefix}inbox`` stream.

Straight through Redis (``WSAUTH_REDIS_URL``, ``WSAUTH_REDIS_PREFIX``), with a
consumer group as :class:`wsauth.shared.state.inbox.Inbox` does: each message
goes to one consumer of a group and stays pending until acknowledged
(at-least-once). Messages are printed one JSON object per line::

    {"id": "1700000000000-0", "sub": "alice", "sid": "...", "connection": "...",
     "data": <JSON>, "at": 1700000000.5}

Bad input or Redis down is one line on stderr and exit status 2.
"""

from __future__ import annotations

import dataclasses
import json

import click

from wsauth.shared.cli.main import echo_json, fail, load_cli_settings, settings_options
from wsauth.shared.core.errors import WsAuthError
from wsauth.shared.state.inbox import MAX_READ_COUNT, Inbox, InboxMessage
from wsauth.shared.state.replay import sync_client

_group = click.option("--group", required=True, help="Consumer group (created when missing).")
_consumer = click.option("--consumer", default="cli", show_default=True, help="Consumer name.")


def _line(message: InboxMessage) -> str:
    return json.dumps(dataclasses.asdict(message), separators=(",", ":"), ensure_ascii=False)


def _inbox(group: str, consumer: str) -> Inbox:
    settings = load_cli_settings()
    # Blocking reads wait longer than a command timeout: allow for them.
    client = sync_client(settings.effective_redis_url, timeout=max(settings.redis_timeout, 35.0))
    return Inbox(client, settings.redis_prefix, group=group, consumer=consumer)


@click.group()
def inbox() -> None:
    """Read the messages clients send (the `send` command), with consumer groups."""


@inbox.command()
@_group
@_consumer
@click.option(
    "--count",
    type=click.IntRange(1, MAX_READ_COUNT),
    default=100,
    show_default=True,
    help="At most this many messages.",
)
@click.option(
    "--block",
    type=click.FloatRange(0, 30),
    default=0,
    show_default=True,
    help="Seconds to wait for the first message (0: answer at once).",
)
@click.option("--ack", "acknowledge", is_flag=True, help="Acknowledge what was printed.")
@click.option(
    "--from-start",
    is_flag=True,
    help="A new group starts at the oldest kept message (default: only new ones).",
)
@settings_options
def read(
    group: str, consumer: str, count: int, block: float, acknowledge: bool, from_start: bool
) -> None:
    """Print messages not yet delivered to GROUP, one JSON object per line."""
    reader = _inbox(group, consumer)
    try:
        reader.ensure_group(start="0" if from_start else "$")
        messages = reader.read(count=count, block=block or None)
        for message in messages:
            click.echo(_line(message))
        if acknowledge and messages:
            reader.ack(*(message.id for message in messages))
    except WsAuthError as error:
        fail(f"{error.code}: {error.detail or error.code}")


@inbox.command()
@_group
@click.argument("ids", nargs=-1, required=True)
@settings_options
def ack(group: str, ids: tuple[str, ...]) -> None:
    """Acknowledge messages of GROUP by id: they are not delivered again."""
    reader = _inbox(group, "cli")
    try:
        done = reader.ack(*ids)
    except WsAuthError as error:
        fail(f"{error.code}: {error.detail or error.code}")
    click.echo(f"acknowledged {done} of {len(ids)}")


@inbox.command()
@_group
@_consumer
@click.option(
    "--min-idle",
    type=click.FloatRange(0, 86400),
    default=60,
    show_default=True,
    help="Seconds a message must have been pending with another consumer.",
)
@click.option("--count", type=click.IntRange(1, MAX_READ_COUNT), default=100, show_default=True)
@settings_options
def claim(group: str, consumer: str, min_idle: float, count: int) -> None:
    """Take over and print messages another consumer of GROUP never acknowledged."""
    reader = _inbox(group, consumer)
    try:
        for message in reader.claim_stale(min_idle=min_idle, count=count):
            click.echo(_line(message))
    except WsAuthError as error:
        fail(f"{error.code}: {error.detail or error.code}")


@inbox.command()
@_group
@settings_options
def info(group: str) -> None:
    """Print the stream's length and GROUP's pending (unacknowledged) count, as JSON."""
    reader = _inbox(group, "cli")
    try:
        reader.ensure_group()
        echo_json({"length": reader.length(), "pending": reader.pending(), "group": group})
    except WsAuthError as error:
        fail(f"{error.code}: {error.detail or error.code}")
