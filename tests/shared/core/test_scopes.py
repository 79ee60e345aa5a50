"""shared/core/scopes.py: the channel grammar and the pure grant decisions (DESIGN.md
"Channels and scopes"), with hypothesis properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsauth.shared.core.errors import InvalidClaims, InvalidScope
from wsauth.shared.core.scopes import (
    MAX_SCOPE_BYTES,
    NO_GRANTS,
    Action,
    Grant,
    Scope,
    is_channel,
    lost_channels,
    parse_grant,
    parse_scope,
    scope_of_claim,
)

CHANNEL_CHARS = "ABCxyz0189_.:@-"
channels = st.text(alphabet=CHANNEL_CHARS, min_size=1, max_size=128)
prefixes = st.text(alphabet=CHANNEL_CHARS, min_size=0, max_size=127)
actions = st.sampled_from(list(Action))
patterns = st.one_of(channels, prefixes.map(lambda prefix: prefix + "*"))
grants = st.builds(Grant, actions, patterns)
scopes = st.frozensets(grants, max_size=8).map(Scope)


@pytest.mark.parametrize(
    "name", ["a", "chat:lobby", "user@example.com", "room.42", "A-Z_0-9", "x" * 128]
)
def test_channel_names_in_the_grammar_are_channels(name: str) -> None:
    assert is_channel(name)


@pytest.mark.parametrize(
    "name", ["", "x" * 129, "chat lobby", "chat/lobby", "chat*", "é", "a\n", "#", 42, None]
)
def test_names_outside_the_grammar_are_not_channels(name: object) -> None:
    assert not is_channel(name)


def test_an_exact_grant_matches_only_its_channel() -> None:
    scope = parse_scope("sub:chat:lobby")
    assert scope.may_subscribe("chat:lobby")
    assert not scope.may_subscribe("chat:lobby2")
    assert not scope.may_subscribe("chat:lobb")


def test_a_prefix_grant_matches_the_channels_that_start_with_it() -> None:
    scope = parse_scope("sub:chat:*")
    assert scope.may_subscribe("chat:lobby")
    assert scope.may_subscribe("chat:")
    assert not scope.may_subscribe("chat")
    assert not scope.may_subscribe("news:chat:x")


def test_a_publish_grant_does_not_grant_subscribe_nor_the_reverse() -> None:
    scope = parse_scope("pub:a sub:b")
    assert scope.may_publish("a") and not scope.may_subscribe("a")
    assert scope.may_subscribe("b") and not scope.may_publish("b")


@pytest.mark.parametrize("text", [None, ""])
def test_no_scope_grants_nothing(text: str | None) -> None:
    assert parse_scope(text) == NO_GRANTS
    assert not parse_scope(text).may_subscribe("anything")


@pytest.mark.parametrize(
    "text",
    [
        "admin",
        "sub:",
        "sub:*x",
        "sub:a*b",
        "sub:**",
        "read:chat",
        "sub:chat lobby:x",
        "sub:a  sub:b",
        " sub:a",
        "sub:a ",
        "sub:a\tsub:b",
        "SUB:a",
        "sub:" + "x" * 129,
        "sub:é",
    ],
)
def test_minting_refuses_a_scope_word_that_is_not_a_grant(text: str) -> None:
    with pytest.raises(InvalidScope) as raised:
        parse_scope(text)
    assert raised.value.code == "invalid_scope"
    assert isinstance(raised.value, InvalidClaims)


def test_minting_refuses_a_scope_over_one_kibibyte() -> None:
    words = " ".join(f"sub:c{index:05d}" for index in range(200))
    assert len(words) > MAX_SCOPE_BYTES
    with pytest.raises(InvalidScope):
        parse_scope(words)


def test_minting_refuses_a_scope_that_is_not_text() -> None:
    with pytest.raises(InvalidScope):
        parse_scope(["sub:a"])  # type: ignore[arg-type]


def test_the_gateway_ignores_words_of_a_claim_that_are_not_grants() -> None:
    scope = scope_of_claim("admin sub:ok pub:* sub:bad*x")
    assert scope.may_subscribe("ok")
    assert scope.may_publish("anything")
    assert not scope.may_subscribe("admin")
    assert scope.grants == frozenset({Grant(Action.SUBSCRIBE, "ok"), Grant(Action.PUBLISH, "*")})


def test_the_gateway_reads_an_oversized_claim_as_no_grants() -> None:
    assert scope_of_claim("sub:* " + "x" * MAX_SCOPE_BYTES) == NO_GRANTS


def test_lost_channels_are_the_subscriptions_the_new_scope_does_not_grant() -> None:
    subscribed = {"chat:a", "chat:b", "news"}
    assert lost_channels(subscribed, parse_scope("sub:chat:* pub:news")) == {"news"}
    assert lost_channels(subscribed, NO_GRANTS) == subscribed


# --- properties ---------------------------------------------------------------------


@given(scopes, actions, channels)
def test_a_scope_allows_exactly_what_one_of_its_grants_matches(
    scope: Scope, action: Action, channel: str
) -> None:
    expected = any(
        grant.action is action
        and (
            channel == grant.pattern
            if not grant.pattern.endswith("*")
            else channel.startswith(grant.pattern[:-1])
        )
        for grant in scope.grants
    )
    assert scope.allows(action, channel) is expected


@given(scopes, scopes, actions, channels)
def test_adding_grants_never_takes_a_permission_away(
    first: Scope, second: Scope, action: Action, channel: str
) -> None:
    union = Scope(first.grants | second.grants)
    if first.allows(action, channel):
        assert union.allows(action, channel)


@given(scopes, st.text(max_size=200), actions)
def test_nothing_outside_the_grammar_is_ever_allowed(
    scope: Scope, name: str, action: Action
) -> None:
    if not is_channel(name):
        assert not scope.allows(action, name)


@given(scopes)
def test_the_canonical_text_of_a_scope_parses_back_to_it(scope: Scope) -> None:
    text = str(scope)
    if len(text.encode()) <= MAX_SCOPE_BYTES:
        assert parse_scope(text) == scope
        assert scope_of_claim(text) == scope


@given(st.text(max_size=300))
def test_parse_scope_raises_only_invalid_scope(text: str) -> None:
    try:
        scope = parse_scope(text)
    except InvalidScope:
        return
    assert all(str(grant) in text.split(" ") for grant in scope.grants)


@given(st.text(max_size=300))
def test_the_lenient_reading_grants_at_most_what_the_strict_one_would(text: str) -> None:
    lenient = scope_of_claim(text)
    for grant in lenient.grants:
        assert parse_grant(str(grant)) == grant
        assert str(grant) in text.split()


@given(st.sets(channels, max_size=10), scopes)
def test_after_lost_channels_every_remaining_subscription_is_granted(
    subscribed: set[str], scope: Scope
) -> None:
    kept = subscribed - lost_channels(subscribed, scope)
    assert all(scope.may_subscribe(channel) for channel in kept)
    assert all(not scope.may_subscribe(channel) for channel in subscribed - kept)
