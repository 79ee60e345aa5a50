"""The pure parts: the event format, backoff, heartbeat decisions, recent revocations."""

from __future__ import annotations

import json

import pytest

from wsauth.shared.core.errors import BadEvent, EventTooLarge
from wsauth.shared.state.events import MAX_EVENT_BYTES, Push, Revoke, decode, encode, socket_message
from wsauth.ws.backoff import Backoff
from wsauth.ws.lifetime import (
    MAX_AGE_SPREAD,
    Heartbeat,
    Liveness,
    RecentRevocations,
    heartbeat,
    max_age_delay,
    sweep_period,
)


def test_a_push_event_round_trips_and_reaches_the_socket_without_its_sub() -> None:
    event = Push("alice", {"text": "héllo", "n": [1, 2]})
    assert json.loads(encode(event)) == {"type": "push", "sub": "alice", "data": event.data}
    assert decode(encode(event)) == event
    assert json.loads(socket_message(event)) == {"type": "push", "data": event.data}


def test_a_push_kept_in_history_reaches_the_socket_with_its_offset_and_epoch() -> None:
    raw = b'{"type":"push","sub":"alice","data":[1],"offset":"7","epoch":"Ab-_"}'
    event = decode(raw)
    assert event == Push("alice", [1], "7", "Ab-_")
    assert json.loads(socket_message(event)) == {
        "type": "push",
        "data": [1],
        "offset": "7",
        "epoch": "Ab-_",
    }


def test_a_revoke_event_names_exactly_one_of_sub_and_sid() -> None:
    assert decode(encode(Revoke(sid="s1", at=10.5))) == Revoke(sid="s1", at=10.5)
    with pytest.raises(BadEvent):
        encode(Revoke(sub="a", sid="b", at=1.0))
    with pytest.raises(BadEvent):
        encode(Revoke(at=1.0))


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"type": "push", "sub": "a"}',
        b'{"type": "push", "sub": "", "data": 1}',
        b'{"type": "push", "sub": "a", "data": 1, "offset": "1"}',
        b'{"type": "push", "sub": "a", "data": 1, "offset": 1, "epoch": "e"}',
        b'{"type": "revoke", "sub": "a"}',
        b'{"type": "revoke", "sub": "a", "at": true}',
        b'{"type": "revoke", "sub": "a", "sid": "b", "at": 1}',
        b'{"type": "shutdown"}',
    ],
)
def test_decode_refuses_anything_but_the_event_shapes(raw: bytes) -> None:
    with pytest.raises(BadEvent):
        decode(raw)


def test_events_over_the_size_cap_are_refused_both_ways() -> None:
    with pytest.raises(EventTooLarge):
        encode(Push("a", "x" * MAX_EVENT_BYTES))
    with pytest.raises(EventTooLarge):
        decode(b" " * (MAX_EVENT_BYTES + 1))


def test_backoff_doubles_up_to_its_cap_with_full_jitter() -> None:
    backoff = Backoff(base=0.5, cap=4.0)
    assert [backoff.ceiling(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.delay(2, draw=lambda: 0.0) == 0.0
    assert backoff.delay(2, draw=lambda: 0.5) == 1.0
    assert backoff.ceiling(10_000) == 4.0


def test_heartbeat_pings_after_the_interval_and_closes_idle_after_the_timeout() -> None:
    liveness = Liveness(last_heard=100.0)
    assert heartbeat(liveness, now=119.0, interval=20, timeout=10) is Heartbeat.WAIT
    assert heartbeat(liveness, now=120.0, interval=20, timeout=10) is Heartbeat.PING
    liveness.ping_sent = 120.0
    assert heartbeat(liveness, now=129.0, interval=20, timeout=10) is Heartbeat.WAIT
    assert heartbeat(liveness, now=130.0, interval=20, timeout=10) is Heartbeat.IDLE


def test_heartbeat_counts_any_frame_after_the_ping_as_the_answer() -> None:
    liveness = Liveness(last_heard=100.0, ping_sent=120.0)
    liveness.heard(125.0)
    assert heartbeat(liveness, now=131.0, interval=20, timeout=10) is Heartbeat.WAIT
    assert liveness.ping_sent is None
    assert heartbeat(liveness, now=145.0, interval=20, timeout=10) is Heartbeat.PING


def test_the_sweep_runs_at_least_every_second_and_at_most_every_50_ms() -> None:
    assert sweep_period(20, 10) == 1.0
    assert sweep_period(1, 1) == 0.25
    assert sweep_period(0.1, 0.1) == 0.05


def test_max_age_is_spread_over_the_last_tenth_of_the_age() -> None:
    assert max_age_delay(3600, draw=lambda: 0.0) == 3600
    assert max_age_delay(3600, draw=lambda: 1.0) == pytest.approx(3600 * (1 - MAX_AGE_SPREAD))


def test_recent_revocations_refuse_a_revoked_sid_and_older_tokens_of_a_revoked_sub() -> None:
    recent = RecentRevocations(horizon=305)
    recent.add(sub=None, sid="s1", at=1000.0, now=1000.0)
    recent.add(sub="alice", sid=None, at=1000.5, now=1000.5)
    assert recent.revoked(sub="bob", sid="s1", iat=2000, now=1001.0)
    assert recent.revoked(sub="alice", sid=None, iat=1000, now=1001.0)
    assert not recent.revoked(sub="alice", sid=None, iat=1001, now=1001.0)
    assert not recent.revoked(sub="bob", sid="s2", iat=999, now=1001.0)


def test_recent_revocations_are_forgotten_after_the_horizon() -> None:
    recent = RecentRevocations(horizon=305)
    recent.add(sub="alice", sid="s1", at=1000.0, now=1000.0)
    assert len(recent) == 2
    assert not recent.revoked(sub="alice", sid="s1", iat=900, now=1306.0)
    assert len(recent) == 0
