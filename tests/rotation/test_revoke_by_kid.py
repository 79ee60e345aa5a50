"""After a key compromise: close only the connections authenticated with that key, no restart.

``wsauth revoke --kid KID`` publishes a revoke event naming the key; every
gateway process closes (4001) the connections whose token was signed by it,
leaves every other connection open, and refuses that key's tokens
(``401 key_revoked``) from then on, even while a JWKS still lists the key.
Real issuer, real gateway, the real console script.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests.rotation.conftest import Stack, kid_of, poll
from wsauth.shared.cli.main import cli
from wsauth.shared.core.errors import BadEvent
from wsauth.shared.state.events import Revoke, decode, encode


@contextlib.contextmanager
def _open(stack: Stack, token: str) -> Iterator[ClientConnection]:
    with connect(
        stack.gateway.ws_url,
        subprotocols=[Subprotocol("wsauth"), Subprotocol(f"wsauth.bearer.{token}")],
        open_timeout=5,
    ) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "welcome"
        yield ws


def _close_code(ws: ClientConnection) -> int | None:
    try:
        ws.recv(timeout=5)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    return None


def _still_open(ws: ClientConnection) -> bool:
    try:
        ws.recv(timeout=0.5)
    except TimeoutError:
        return True
    except ConnectionClosed:
        return False
    return True


@pytest.mark.parametrize("stack", ["file"], indirect=True)
def test_revoke_by_kid_closes_only_that_keys_connections_and_refuses_its_tokens(
    stack: Stack,
) -> None:
    old_kid = stack.keys("list", "--state", "current", "-q").strip()
    old_key = stack.private_key(old_kid)
    old_token = stack.token()
    assert kid_of(old_token) == old_kid
    with _open(stack, old_token) as on_old:
        new_kid = stack.keys("generate", "-q").strip()
        poll(lambda: new_kid in stack.gateway_kids(), what="the gateway to know the new key")
        stack.keys("promote", new_kid, "--force")
        new_token = stack.token()
        assert kid_of(new_token) == new_kid
        with _open(stack, new_token) as on_new:
            done = stack.wsauth("revoke", "--kid", old_kid, "--json")
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["kid"]["value"] == old_kid
            assert json.loads(done.stdout)["kid"]["delivered_to_nodes"] == 1

            assert _close_code(on_old) == 4001
            assert _still_open(on_new)
            # The old key is still published (retiring): the gateway refuses it all the same.
            assert old_kid in stack.gateway_kids()
            assert stack.outcome(stack.record(old_key)) == "401 key_revoked"
            assert stack.outcome(stack.token()) == "welcome"
            assert _still_open(on_new)


def test_a_revoke_event_names_exactly_one_of_sub_sid_and_kid() -> None:
    event = Revoke(kid="NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", at=1.5)
    assert decode(encode(event)) == event
    for bad in (Revoke(kid="k", sub="alice", at=1.0), Revoke(at=1.0)):
        with pytest.raises(BadEvent, match="exactly one of sub, sid and kid"):
            encode(bad)
    with pytest.raises(BadEvent):
        decode(b'{"type": "revoke", "kid": "k", "sid": "s", "at": 1}')
    with pytest.raises(BadEvent):
        decode(b'{"type": "revoke", "kid": "' + b"k" * 200 + b'", "at": 1}')


def test_wsauth_revoke_needs_a_target() -> None:
    done = CliRunner().invoke(cli, ["revoke"])
    assert done.exit_code == 2 and "--kid KID" in done.stderr and done.stderr.count("\n") == 1
