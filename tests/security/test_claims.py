"""Hostile claims in genuinely signed tokens: refused before Redis, at the exact boundaries.

Times are real: tokens are minted relative to ``time.time()`` and the margins
are chosen so that the outcome holds however long the request takes within a
second or two (time only moves forward), never by sleeping.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from tests.security.conftest import Probe
from tests.security.support import Minter
from wsauth.shared.core.config import MAX_TOKEN_TTL, Settings

REQUIRED = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"]


@pytest.mark.parametrize("claim", REQUIRED)
def test_a_token_missing_a_required_claim_is_refused_without_touching_redis(
    probe: Probe, minter: Minter, claim: str
) -> None:
    payload = minter.payload()
    minter.record(payload["jti"])  # the genuine record stays, even when the claim dropped is jti
    token = minter.sign(minter.header(), {k: v for k, v in payload.items() if k != claim})
    probe.refuse_token(token, 401, "invalid_claims", jti=payload["jti"])


WRONG_TYPES: dict[str, tuple[str, Any]] = {
    "iat-string": ("iat", "1800000000"),
    "iat-float": ("iat", 1800000000.5),
    "iat-boolean": ("iat", True),
    "iat-null": ("iat", None),
    "iat-negative": ("iat", -1),
    "nbf-string": ("nbf", "now"),
    "nbf-list": ("nbf", [1]),
    "exp-string": ("exp", "9999999999"),
    "exp-float": ("exp", 9.9e9),
    "exp-beyond-2-53": ("exp", 2**53),
    "exp-object": ("exp", {"$date": 1}),
    "sub-number": ("sub", 42),
    "sub-null": ("sub", None),
    "sub-empty": ("sub", ""),
    "sub-list": ("sub", ["alice"]),
    "sub-257-characters": ("sub", "a" * 257),
    "sub-newline": ("sub", "alice\nreason=forged"),
    "iss-number": ("iss", 1),
    "iss-null": ("iss", None),
    "aud-array": ("aud", ["wsauth"]),
    "aud-object": ("aud", {"wsauth": True}),
    "jti-number": ("jti", 1),
    "jti-short": ("jti", "abc"),
    "jti-foreign-characters": ("jti", "!" * 22),
    "jti-null": ("jti", None),
    "sid-number": ("sid", 1),
    "scope-list": ("scope", ["admin"]),
    "unknown-claim": ("admin", True),
}


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_a_claim_of_the_wrong_json_type_is_refused_without_touching_redis(
    probe: Probe, minter: Minter, case: str
) -> None:
    claim, value = WRONG_TYPES[case]
    genuine = minter.payload()
    minter.record(genuine["jti"])
    token = minter.sign(minter.header(), {**genuine, claim: value})
    probe.refuse_token(token, 401, "invalid_claims", jti=genuine["jti"])


def test_issued_after_not_before_is_refused(probe: Probe, minter: Minter) -> None:
    now = int(time.time())
    token, jti = minter.issue(iat=now, nbf=now - 1)
    probe.refuse_token(token, 401, "invalid_claims", jti=jti)


def test_expiring_at_not_before_is_refused(probe: Probe, minter: Minter) -> None:
    now = int(time.time())
    token, jti = minter.issue(iat=now, nbf=now, exp=now)
    probe.refuse_token(token, 401, "invalid_claims", jti=jti)


# --- lifetime -------------------------------------------------------------------------


def test_a_lifetime_one_second_over_the_cap_is_refused(probe: Probe, minter: Minter) -> None:
    now = int(time.time())
    token, jti = minter.issue(iat=now, nbf=now, exp=now + MAX_TOKEN_TTL + 1)
    probe.refuse_token(token, 401, "lifetime_too_long", jti=jti)


def test_a_lifetime_of_a_year_is_refused(probe: Probe, minter: Minter) -> None:
    now = int(time.time())
    token, jti = minter.issue(iat=now, nbf=now, exp=now + 365 * 86400)
    probe.refuse_token(token, 401, "lifetime_too_long", jti=jti)


def test_a_lifetime_at_the_cap_is_accepted_once(probe: Probe, minter: Minter) -> None:
    now = int(time.time())
    token, jti = minter.issue(iat=now, nbf=now, exp=now + MAX_TOKEN_TTL)
    probe.accept_token(token, jti)


# --- exp, nbf and iat against the leeway ----------------------------------------------


def test_exp_exactly_the_leeway_ago_is_refused(
    probe: Probe, minter: Minter, gateway_settings: Settings
) -> None:
    # The gateway's clock reads at least floor(now): now >= exp + leeway, however fast.
    exp = math.floor(time.time()) - gateway_settings.leeway
    token, jti = minter.issue(iat=exp - 30, nbf=exp - 30, exp=exp)
    probe.refuse_token(token, 401, "token_expired", jti=jti)


def test_exp_one_second_past_the_leeway_is_refused(
    probe: Probe, minter: Minter, gateway_settings: Settings
) -> None:
    exp = math.floor(time.time()) - gateway_settings.leeway - 1
    token, jti = minter.issue(iat=exp - 30, nbf=exp - 30, exp=exp)
    probe.refuse_token(token, 401, "token_expired", jti=jti)


def test_exp_within_the_leeway_is_accepted(
    probe: Probe, minter: Minter, gateway_settings: Settings
) -> None:
    # Expired 3 s ago under a 5 s leeway: accepted if the request takes under 2 s.
    exp = math.floor(time.time()) - gateway_settings.leeway + 2
    token, jti = minter.issue(iat=exp - 30, nbf=exp - 30, exp=exp)
    probe.accept_token(token, jti)


def test_nbf_exactly_the_leeway_ahead_is_accepted(
    probe: Probe, minter: Minter, gateway_settings: Settings
) -> None:
    # nbf <= now + leeway holds from the moment of minting on.
    nbf = math.floor(time.time()) + gateway_settings.leeway
    token, jti = minter.issue(iat=nbf, nbf=nbf, exp=nbf + 30)
    probe.accept_token(token, jti)


def test_nbf_one_second_past_the_leeway_is_refused(
    probe: Probe, minter: Minter, gateway_settings: Settings
) -> None:
    # Refused while now < ceil(now at minting) + 1: at least one second of margin.
    issued = math.floor(time.time()) - 1
    nbf = math.ceil(time.time()) + gateway_settings.leeway + 1
    token, jti = minter.issue(iat=issued, nbf=nbf, exp=nbf + 30)
    probe.refuse_token(token, 401, "token_not_yet_valid", jti=jti)


def test_iat_exactly_the_leeway_ahead_is_accepted(
    probe: Probe, minter: Minter, gateway_settings: Settings
) -> None:
    iat = math.floor(time.time()) + gateway_settings.leeway
    token, jti = minter.issue(iat=iat, nbf=iat, exp=iat + 30)
    probe.accept_token(token, jti)


def test_iat_one_second_past_the_leeway_is_refused(
    probe: Probe, minter: Minter, gateway_settings: Settings
) -> None:
    iat = math.ceil(time.time()) + gateway_settings.leeway + 1
    token, jti = minter.issue(iat=iat, nbf=iat, exp=iat + 30)
    probe.refuse_token(token, 401, "token_not_yet_valid", jti=jti)


def test_a_token_from_the_far_future_is_refused(probe: Probe, minter: Minter) -> None:
    iat = int(time.time()) + 10 * 365 * 86400
    token, jti = minter.issue(iat=iat, nbf=iat, exp=iat + 30)
    probe.refuse_token(token, 401, "token_not_yet_valid", jti=jti)


def test_a_token_from_the_epoch_is_refused(probe: Probe, minter: Minter) -> None:
    token, jti = minter.issue(iat=0, nbf=0, exp=30)
    probe.refuse_token(token, 401, "token_expired", jti=jti)


# --- iss and aud ----------------------------------------------------------------------


ISSUER_LOOKALIKES = [
    "http://127.0.0.1:8000/",
    "http://127.0.0.1:8000/.",
    "http://127.0.0.1:80000",
    "http://127.0.0.1:8000.evil.example",
    "http://127.0.0.1:8000@evil.example",
    "https://127.0.0.1:8000",
    "HTTP://127.0.0.1:8000",
    "http://127.0.0.1:8000 ",
    " http://127.0.0.1:8000",
    "http://127.0.0.1:800",
    "http://127.0.0.2:8000",
    "http://localhost:8000",
    "http://127.0.0.1:8000\u200b",
    "http://127.0.0.1:8000#",
    "",
]


@pytest.mark.parametrize("iss", ISSUER_LOOKALIKES)
def test_an_issuer_lookalike_is_refused(
    probe: Probe, minter: Minter, gateway_settings: Settings, iss: str
) -> None:
    assert gateway_settings.issuer == "http://127.0.0.1:8000"
    token, jti = minter.issue(iss=iss)
    probe.refuse_token(token, 401, "wrong_issuer", jti=jti)


AUDIENCE_LOOKALIKES = [
    "wsauth ",
    " wsauth",
    "WSAUTH",
    "Wsauth",
    "wsauth2",
    "wsaut",
    "wsauth\u0000",
    "wsauth\u200b",
    "wsаuth",  # noqa: RUF001 - a Cyrillic a, on purpose
    "wsauth,other",
    "",
]


@pytest.mark.parametrize("aud", AUDIENCE_LOOKALIKES)
def test_an_audience_lookalike_is_refused(
    probe: Probe, minter: Minter, gateway_settings: Settings, aud: str
) -> None:
    assert gateway_settings.audience == "wsauth"
    token, jti = minter.issue(aud=aud)
    probe.refuse_token(token, 401, "wrong_audience", jti=jti)


def test_an_honest_token_is_accepted_once_and_then_refused_as_replayed(
    probe: Probe, minter: Minter
) -> None:
    token, jti = minter.issue()
    probe.accept_token(token, jti)
    probe.log.caplog.clear()
    answer, seen = probe.send([("Authorization", f"Bearer {token}")])
    assert (answer.status, answer.error) == (401, "token_replayed")
    # The node remembers the jtis it consumed (wsauth.ws.consumed): Redis is not asked.
    assert seen.commands == {}
    probe.log.expect_refusal("token_replayed", token)
