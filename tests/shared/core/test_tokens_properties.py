"""Property tests: verify() yields valid claims or one documented error, never anything else."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.tokens import AUDIENCE, ISSUER, NOW, make_header, make_payload, segment
from wsauth.shared.core.errors import InvalidToken
from wsauth.shared.core.keyset import Keyset, SigningKey, b64url
from wsauth.shared.core.tokens import Claims, verify

KEY = SigningKey.generate("EdDSA")
KEYSET = Keyset([KEY.public])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def outcome(token: Any) -> Claims | InvalidToken:
    try:
        return verify(
            token, keyset=KEYSET, issuer=ISSUER, audience=AUDIENCE, now=NOW, leeway=5, max_ttl=300
        )
    except InvalidToken as error:  # the documented refusals; anything else fails the test
        return error


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_refused_with_a_documented_error(text: str) -> None:
    assert isinstance(outcome(text), InvalidToken)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=60).map(b64url), min_size=1, max_size=6).map(".".join))
def test_any_base64url_segments_are_refused_with_a_documented_error(token: str) -> None:
    assert isinstance(outcome(token), InvalidToken)


@settings(max_examples=300, deadline=None)
@given(
    header=st.dictionaries(
        st.sampled_from(["alg", "kid", "typ", "crit", "jku"]), json_values, max_size=4
    ),
    payload=st.dictionaries(
        st.sampled_from(["iss", "aud", "sub", "iat", "nbf", "exp", "jti", "sid", "x"]),
        json_values,
        max_size=9,
    ),
)
def test_any_signed_header_and_payload_is_refused_or_fully_valid(
    header: dict[str, Any], payload: dict[str, Any]
) -> None:
    full_header = {**make_header(KEY), **header}
    full_payload = {**make_payload(), **payload}
    signing_input = f"{segment(full_header)}.{segment(full_payload)}"
    token = f"{signing_input}.{b64url(KEY.sign(signing_input.encode()))}"
    result = outcome(token)
    if isinstance(result, Claims):  # then every check must really hold
        assert full_header == make_header(KEY)
        assert (result.iss, result.aud) == (ISSUER, AUDIENCE)
        assert type(result.exp) is int and result.exp - result.iat <= 300
        assert json.loads(json.dumps(full_payload))["sub"] == result.sub


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decoded_as_latin1_are_refused(data: bytes) -> None:
    assert isinstance(outcome(data.decode("latin-1")), InvalidToken)


def test_non_string_input_is_refused() -> None:
    for value in (None, b"a.b.c", 12, ["a.b.c"]):
        assert isinstance(outcome(value), InvalidToken)
