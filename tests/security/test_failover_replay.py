"""Replays after a failover: a node refuses a jti it consumed even if Redis brings it back.

A Redis failover with asynchronous replication can resurrect a record the
old master had already deleted. Here the resurrection is done by hand (the
issuer's ``SET`` again, after the token was used), which is what the new
master would hold. The node that consumed the token refuses it from its own
memory (:mod:`wsauth.ws.consumed`) without asking Redis, so the resurrected
record stays where it is; another node, which never saw the token, still
trusts Redis: that is what remains (threat-model.md).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from tests.security.conftest import Probe
from tests.security.support import Minter, offer
from wsauth.ws.consumed import ConsumedJtis


def test_a_jti_resurrected_after_it_was_consumed_is_refused_by_the_node_that_consumed_it(
    probe: Probe, minter: Minter
) -> None:
    token, jti = minter.issue()
    probe.accept_token(token, jti)
    minter.record(jti)  # the failover: the record is back
    probe.log.caplog.clear()
    answer, seen = probe.send(offer(token, "authorization")[0])
    assert (answer.status, answer.error) == (401, "token_replayed")
    assert seen.commands == {}, "Redis was asked"
    assert minter.recorded(jti), "the resurrected record was touched"
    probe.log.expect_refusal("token_replayed", token)


def test_another_node_trusts_redis_for_a_resurrected_jti_as_documented(
    make_probe: Callable[..., contextlib.AbstractContextManager[Probe]],
    probe: Probe,
    minter: Minter,
) -> None:
    # What remains (threat-model.md): a node that never saw the token cannot know.
    token, jti = minter.issue()
    probe.accept_token(token, jti)
    minter.record(jti)
    with make_probe() as other:
        other.log.caplog.clear()
        other.accept_token(token, jti)


def test_the_consumed_memory_forgets_a_jti_when_its_token_expires() -> None:
    consumed = ConsumedJtis()
    consumed.add("a", until=100.0, now=50.0)
    assert consumed.seen("a", now=99.9)
    assert not consumed.seen("a", now=100.0)
    consumed.add("b", until=200.0, now=150.0)  # pruning happens on add
    assert "a" not in consumed and len(consumed) == 1


def test_the_consumed_memory_is_bounded_and_forgets_the_soonest_expiry_first() -> None:
    consumed = ConsumedJtis(max_entries=3)
    now = time.time()
    for index, until in enumerate((now + 30, now + 10, now + 20, now + 40)):
        consumed.add(f"j{index}", until=until, now=now)
    assert len(consumed) == 3
    assert "j1" not in consumed  # the one expiring first went
    assert all(f"j{index}" in consumed for index in (0, 2, 3))


def test_an_already_expired_token_is_not_remembered() -> None:
    consumed = ConsumedJtis()
    consumed.add("late", until=10.0, now=20.0)
    assert len(consumed) == 0
