"""A full key rotation through the real ``wsauth keys`` commands, with clients connecting nonstop.

Issuer and gateway run on loopback (the gateway reading ``jwks.json`` in one
variant, the issuer's JWKS URL in the other); two clients get tokens from
``POST /api/tokens`` and open WebSockets the whole time. Not one handshake
may fail, and afterwards a token signed by the retired key is refused.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.rotation.conftest import RULE_CACHE, Stack, Traffic, poll
from tests.ws.conftest import refusal
from wsauth.shared.store.keystore import JWKS_FETCH_MARGIN


def _record(stack: Stack, kid: str) -> dict[str, Any]:
    keys = json.loads(stack.keys("list", "--json"))["keys"]
    return dict(next(key for key in keys if key["kid"] == kid))


def _wait_until(epoch: float) -> None:
    poll(lambda: time.time() >= epoch, timeout=45, what=f"the time {epoch}")


def test_a_full_rotation_under_load_fails_no_handshake_and_retires_the_old_key(
    stack: Stack,
) -> None:
    old_kid = stack.keys("list", "--state", "current", "-q").strip()
    old_key = stack.private_key(old_kid)  # saved before retire deletes it

    with Traffic(stack) as traffic:
        poll(lambda: traffic.total(old_kid) >= 5, what="traffic on the old key")

        new_kid = stack.keys("generate", "-q").strip()
        assert _record(stack, new_kid)["state"] == "next"
        record = _record(stack, new_kid)
        # C + F: the cache interval and the JWKS fetch margin (docs/howto/key-rotation.md).
        assert record["promote_after"] == record["created"] + RULE_CACHE + JWKS_FETCH_MARGIN
        _wait_until(record["promote_after"])
        assert new_kid in stack.gateway_kids()
        assert "promoted" in stack.keys("promote", new_kid)
        poll(lambda: traffic.total(new_kid) >= 5, what="traffic on the new key")

        early = stack.wsauth("keys", "retire", old_kid)
        assert early.returncode == 2
        assert "wait, or --force" in early.stderr
        _wait_until(_record(stack, old_kid)["retire_after"])
        assert stack.keys("retire").strip() == f"retired {old_kid}"
        poll(lambda: stack.gateway_kids() == [new_kid], what="the gateway to drop the old key")

        after = traffic.total()
        poll(lambda: traffic.total() >= after + 5, what="traffic after the retirement")

    assert traffic.failures == []
    assert traffic.total(old_kid) >= 5
    assert traffic.total(new_kid) >= 10

    answer = refusal(
        stack.gateway.ws_url, subprotocols=["wsauth", f"wsauth.bearer.{stack.record(old_key)}"]
    )
    assert (answer.status, answer.error) == (401, "unknown_kid")
