"""Emergency rotation: a revoked key's tokens are refused within one refresh interval.

The steps of the runbook's emergency section (generate → promote --force →
revoke the old key) through the real ``wsauth keys`` commands, against an
issuer and a gateway on loopback, the gateway reading ``jwks.json`` in one
variant and the issuer's JWKS URL in the other.
"""

from __future__ import annotations

import time

from tests.rotation.conftest import SERVER_CACHE, Stack, poll


def test_tokens_of_a_revoked_key_are_refused_within_one_refresh_interval(stack: Stack) -> None:
    old_kid = stack.keys("list", "--state", "current", "-q").strip()
    old_key = stack.private_key(old_kid)  # what an attacker who stole it holds
    # Each token is fresh and its jti recorded in Redis: the most a forger could have.
    assert stack.outcome(stack.record(old_key)) == "welcome"

    new_kid = stack.keys("generate", "-q").strip()
    assert "promoted" in stack.keys("promote", new_kid, "--force")
    assert stack.keys("revoke", old_kid).strip() == f"revoked {old_kid}"
    revoked_at = time.monotonic()

    poll(
        lambda: stack.outcome(stack.record(old_key)) == "401 unknown_kid",
        what="the revoked key to be refused",
    )
    elapsed = time.monotonic() - revoked_at
    # One refresh interval, plus one fetch and the attempts themselves.
    assert elapsed < SERVER_CACHE + 1.5, elapsed
    assert stack.gateway_kids() == [new_kid]
    # And it stays refused.
    assert stack.outcome(stack.record(old_key)) == "401 unknown_kid"
    # The new key, promoted at once, is accepted (here: already seen with the revocation).
    assert stack.outcome(stack.token()) == "welcome"
