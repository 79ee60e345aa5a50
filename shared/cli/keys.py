"""``wsauth keys``: generate, list, publish, promote, retire, revoke and rotate keys.

Every command prints what it did (``--json`` for machines) and exits 0,
including a ``rotate`` that only waited (``"changed": false``). Bad input — an
unknown kid, a key in the wrong state, a promote or retire before its time
without ``--force``, an unreadable or unwritable store — is one line on
stderr, exit status 2, and the store is unchanged. (A bad setting is exit
status 2 too; click's own usage errors are also 2.)

The waits use the timing rule's numbers of the shell (``WSAUTH_TOKEN_TTL``,
``WSAUTH_LEEWAY``, ``WSAUTH_JWKS_CACHE``) raised to those recorded in the key
store, plus :data:`~wsauth.shared.store.keystore.JWKS_FETCH_MARGIN`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from wsauth.shared.cli.main import echo_json, fail, load_cli_settings
from wsauth.shared.core.config import Settings
from wsauth.shared.core.errors import KeyStoreError, WsAuthError
from wsauth.shared.core.keyset import ALGORITHMS, DEFAULT_ALGORITHM
from wsauth.shared.state.keyset_reports import (
    ANSWER_TIMEOUT,
    judge,
    read_reports,
    request_reports,
)
from wsauth.shared.state.replay import sync_client
from wsauth.shared.store.keystore import (
    JWKS_FETCH_MARGIN,
    KeyRecord,
    KeyState,
    KeyStore,
    Timing,
)

_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
_quiet_option = click.option(
    "-q", "--quiet", is_flag=True, help="Print only the kid(s), one per line (for scripts)."
)
_dir_option = click.option(
    "--keys-dir", "keys_dir", default=None, metavar="DIR", help="Key store [env: WSAUTH_KEYS_DIR]."
)


# A kid is base64url and may begin with "-" (even "-h" or "--"): commands that
# take one treat unknown options as the argument, and answer only --help.
_KID_COMMAND: dict[str, Any] = {
    "context_settings": {"ignore_unknown_options": True, "help_option_names": ["--help"]}
}


def _settings(keys_dir: str | None) -> Settings:
    return load_cli_settings(keys_dir=keys_dir) if keys_dir else load_cli_settings()


def _store(settings: Settings) -> KeyStore:
    return KeyStore(settings.keys_dir)


def timing_of(settings: Settings) -> Timing:
    """The shell's numbers of the timing rule, with the JWKS fetch margin."""
    return Timing(
        token_ttl=settings.token_ttl,
        leeway=settings.leeway,
        cache_interval=settings.jwks_cache,
        fetch_margin=JWKS_FETCH_MARGIN,
    )


def _now() -> float:
    # Not truncated: the key store rounds recorded times up (see wsauth.shared.store.keystore).
    return time.time()


def _describe(record: KeyRecord, timing: Timing | None = None) -> dict[str, Any]:
    """The record as JSON; a ``next`` key also gets ``promote_after`` (when ``timing`` is given)."""
    document = record.to_json()
    if timing is not None and record.state is KeyState.NEXT:
        document["promote_after"] = record.created + timing.promote_delay
    return document


def _report(as_json: bool, action: str, lines: list[str], document: dict[str, Any]) -> None:
    if as_json:
        echo_json({"action": action, **document})
    else:
        for line in lines or [f"{action}: nothing to do"]:
            click.echo(line)


@click.group()
def keys() -> None:
    """Manage the signing keys in the key store (docs/howto/key-rotation.md)."""


@keys.command()
@click.option(
    "--alg",
    type=click.Choice(ALGORITHMS),
    default=None,
    help=f"Signature algorithm [default: the current key's, {DEFAULT_ALGORITHM} in a new store].",
)
@_dir_option
@_json_option
@_quiet_option
def generate(alg: str | None, keys_dir: str | None, as_json: bool, quiet: bool) -> None:
    """Add a key: `next`, or `current` when the store has no current key."""
    settings = _settings(keys_dir)
    store = _store(settings)
    try:
        record = store.generate(alg, now=_now(), timing=timing_of(settings))
        timing = store.effective_timing(timing_of(settings))
    except KeyStoreError as error:
        fail(str(error))
    if quiet:
        click.echo(record.kid)
        return
    _report(
        as_json,
        "generate",
        [f"generated {record.alg} key {record.kid} ({record.state})"],
        {"key": _describe(record, timing)},
    )


@keys.command("list")
@click.option(
    "--state",
    type=click.Choice([str(state) for state in KeyState]),
    default=None,
    help="Only keys in this state.",
)
@_dir_option
@_json_option
@_quiet_option
def list_keys(state: str | None, keys_dir: str | None, as_json: bool, quiet: bool) -> None:
    """List the keys with their state and times."""
    settings = _settings(keys_dir)
    store = _store(settings)
    try:
        records = store.records()
        timing = store.effective_timing(timing_of(settings))
    except KeyStoreError as error:
        fail(str(error))
    if state is not None:
        records = tuple(record for record in records if record.state == state)
    if quiet:
        for record in records:
            click.echo(record.kid)
        return
    if as_json:
        echo_json(
            {"keys": [_describe(record, timing) for record in records], "timing": timing.to_json()}
        )
        return
    if not records:
        click.echo("no keys (run: wsauth keys generate)")
    for record in records:
        due = f"  retire after {record.retire_after}" if record.retire_after else ""
        click.echo(f"{record.kid}  {record.alg:<6} {record.state:<9} created {record.created}{due}")


@keys.command()
@_dir_option
def jwks(keys_dir: str | None) -> None:
    """Print the public JWKS (next, current and retiring keys)."""
    settings = _settings(keys_dir)
    try:
        keyset = _store(settings).public_keyset()
    except Exception as error:  # InvalidKeyset or KeyStoreError: one line either way
        fail(f"{settings.keys_dir / 'jwks.json'}: {error}")
    click.echo(json.dumps(keyset.to_jwks(), indent=2, sort_keys=True))


@keys.command(**_KID_COMMAND)
@click.argument("kid")
@click.option("--force", is_flag=True, help="Promote before one cache interval has passed.")
@_dir_option
@_json_option
def promote(kid: str, force: bool, keys_dir: str | None, as_json: bool) -> None:
    """Make a `next` key `current`; the old current key becomes `retiring`."""
    settings = _settings(keys_dir)
    try:
        records = _store(settings).promote(kid, _now(), timing_of(settings), force=force)
    except KeyStoreError as error:
        fail(str(error))
    lines = [f"promoted {kid} to current"]
    lines += [
        f"{record.kid} is retiring; retire after {record.retire_after}"
        for record in records
        if record.state is KeyState.RETIRING and record.retire_after is not None
    ]
    _report(as_json, "promote", lines, {"keys": [_describe(record) for record in records]})


@keys.command(**_KID_COMMAND)
@click.argument("kid", required=False)
@click.option("--force", is_flag=True, help="Retire before its retire-after time.")
@_dir_option
@_json_option
def retire(kid: str | None, force: bool, keys_dir: str | None, as_json: bool) -> None:
    """Remove retiring keys whose time has come (or KID)."""
    settings = _settings(keys_dir)
    try:
        gone = _store(settings).retire(kid, _now(), force=force)
    except KeyStoreError as error:
        fail(str(error))
    _report(as_json, "retire", [f"retired {kid}" for kid in gone], {"retired": gone})


@keys.command(**_KID_COMMAND)
@click.argument("kid")
@_dir_option
@_json_option
def revoke(kid: str, keys_dir: str | None, as_json: bool) -> None:
    """Remove a key at once, whatever its state (compromise)."""
    settings = _settings(keys_dir)
    try:
        _store(settings).revoke(kid)
    except KeyStoreError as error:
        fail(str(error))
    _report(as_json, "revoke", [f"revoked {kid}"], {"revoked": kid})


@keys.command()
@click.option(
    "--alg",
    type=click.Choice(ALGORITHMS),
    default=None,
    help=f"Algorithm of new keys [default: the current key's; {DEFAULT_ALGORITHM}; new store].",
)
@_dir_option
@_json_option
def rotate(alg: str | None, keys_dir: str | None, as_json: bool) -> None:
    """The safe schedule in one idempotent step (for cron).

    Generate a `next` key when there is none, promote it once it has been
    published for one cache interval plus the fetch margin, retire what is
    due. Exit status 0 when the step ran, even if it only waited
    ("changed": false); 2 with one line on stderr when it failed (nothing changed).
    """
    settings = _settings(keys_dir)
    try:
        rotation = _store(settings).rotate(alg, _now(), timing_of(settings))
    except KeyStoreError as error:
        fail(str(error))
    lines: list[str] = []
    if rotation.generated:
        record = rotation.generated
        lines.append(f"generated {record.alg} key {record.kid} ({record.state})")
    if rotation.promoted:
        lines.append(f"promoted {rotation.promoted} to current")
    if rotation.promote_after:
        lines.append(f"next key can be promoted after {rotation.promote_after}")
    lines += [f"retired {kid}" for kid in rotation.retired]
    document = {
        "changed": bool(rotation.generated or rotation.promoted or rotation.retired),
        "generated": rotation.generated.kid if rotation.generated else None,
        "promoted": rotation.promoted,
        "promote_after": rotation.promote_after,
        "retired": rotation.retired,
    }
    _report(as_json, "rotate", lines, document)


@keys.command()
@click.option("--has", "has", multiple=True, metavar="KID", help="Every process must hold KID.")
@click.option("--lacks", "lacks", multiple=True, metavar="KID", help="No process may hold KID.")
@click.option(
    "--expect",
    type=click.IntRange(1, 100_000),
    default=None,
    metavar="N",
    help="At least N processes must report (nodes x --processes).",
)
@click.option(
    "--wait",
    type=click.FloatRange(0, 3600),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Check again until every condition holds, for up to SECONDS.",
)
@_json_option
def gateways(
    has: tuple[str, ...], lacks: tuple[str, ...], expect: int | None, wait: float, as_json: bool
) -> None:
    """The keyset of every gateway process: each one subscribed to the events
    channel is asked, and answers through Redis.

    Exit status 0 when every process asked answers with a fresh keyset that
    holds every --has kid and no --lacks kid (and at least --expect answer);
    2 with one line on stderr naming each process that does not. Needs
    WSAUTH_REDIS_URL and WSAUTH_REDIS_PREFIX.
    """
    settings = load_cli_settings()
    client = sync_client(settings.effective_redis_url, timeout=settings.redis_timeout)
    deadline = time.monotonic() + wait
    prefix = settings.redis_prefix
    try:
        while True:
            try:
                request_id, asked = request_reports(client, prefix)
                answered = time.monotonic() + ANSWER_TIMEOUT
                reports = read_reports(client, prefix, request_id)
                while len(reports) < asked and time.monotonic() < answered:
                    time.sleep(0.05)
                    reports = read_reports(client, prefix, request_id)
            except WsAuthError as error:
                fail(f"{error.code}: {error.detail or error.code}")
            verdict = judge(reports, has=has, lacks=lacks, expect=expect, asked=asked)
            if not verdict.problems or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
    finally:
        client.close()
    if as_json:
        echo_json({"gateways": verdict.reports, "problems": verdict.problems})
    else:
        for document in verdict.reports:
            state = "stale" if document["stale"] else "fresh"
            click.echo(
                f"{document['node']}  {document['fingerprint']}  {state}  "
                f"kids={','.join(document['kids']) or '-'}"
            )
    if verdict.problems:
        fail("; ".join(verdict.problems))
