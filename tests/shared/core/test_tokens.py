"""shared/core/tokens.py: pure mint/verify, every check of DESIGN.md "Token"."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tests.support.tokens import AUDIENCE, ISSUER, NOW, forge, make_header, make_payload, segment
from wsauth.shared.core import errors
from wsauth.shared.core.keyset import Keyset, SigningKey, b64url
from wsauth.shared.core.tokens import MAX_TOKEN_BYTES, Claims, mint, new_jti, verify


@pytest.fixture(scope="module", params=["EdDSA", "ES256", "RS256"])
def key(request: pytest.FixtureRequest) -> SigningKey:
    return SigningKey.generate(request.param)


@pytest.fixture(scope="module")
def ed_key() -> SigningKey:
    return SigningKey.generate("EdDSA")


def check(token: str, *keys: SigningKey, now: float = NOW, **options: Any) -> Claims:
    arguments: dict[str, Any] = {
        "keyset": Keyset(k.public for k in keys),
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "now": now,
        "leeway": 5,
        "max_ttl": 300,
    }
    arguments.update(options)
    return verify(token, **arguments)


def test_mint_then_verify_returns_the_same_claims(key: SigningKey) -> None:
    token, minted = mint(
        key=key, issuer=ISSUER, audience=AUDIENCE, subject="alice", now=NOW, ttl=30, sid="s-1"
    )
    claims = check(token, key)
    assert claims == minted
    assert (claims.sub, claims.sid, claims.exp - claims.iat, claims.kid) == (
        "alice",
        "s-1",
        30,
        key.kid,
    )


def test_minted_header_is_exactly_alg_kid_typ(key: SigningKey) -> None:
    token, _ = mint(key=key, issuer=ISSUER, audience=AUDIENCE, subject="a", now=NOW, ttl=30)
    assert jwt.get_unverified_header(token) == {"alg": key.alg, "kid": key.kid, "typ": "wsauth+jwt"}


def test_pyjwt_accepts_our_tokens_as_standard_jws(key: SigningKey) -> None:
    token, _ = mint(key=key, issuer=ISSUER, audience=AUDIENCE, subject="a", now=NOW, ttl=30)
    payload = jwt.decode(
        token,
        key.public.public_key,
        algorithms=[key.alg],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert payload["sub"] == "a"


def test_jti_is_128_random_bits_in_base64url() -> None:
    jtis = {new_jti() for _ in range(1000)}
    assert len(jtis) == 1000
    assert all(len(base64.urlsafe_b64decode(j + "==")) == 16 for j in jtis)


def test_verify_rejects_a_token_from_a_key_not_in_the_keyset(ed_key: SigningKey) -> None:
    other = SigningKey.generate("EdDSA")
    with pytest.raises(errors.UnknownKey):
        check(forge(other), ed_key)


def test_verify_rejects_a_signature_made_by_another_key_under_our_kid(ed_key: SigningKey) -> None:
    impostor = SigningKey.generate("EdDSA")
    header = make_header(ed_key)
    signing_input = f"{segment(header)}.{segment(make_payload())}"
    token = f"{signing_input}.{b64url(impostor.sign(signing_input.encode()))}"
    with pytest.raises(errors.BadSignature):
        check(token, ed_key)


def test_verify_rejects_a_tampered_payload(ed_key: SigningKey) -> None:
    header, _, signature = forge(ed_key).split(".")
    tampered = f"{header}.{segment(make_payload(sub='mallory'))}.{signature}"
    with pytest.raises(errors.BadSignature):
        check(tampered, ed_key)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_verify_rejects_alg_none_in_every_casing(ed_key: SigningKey, alg: str) -> None:
    token = f"{segment(make_header(ed_key, alg=alg))}.{segment(make_payload())}."
    with pytest.raises(errors.AlgorithmNotAllowed):
        check(token, ed_key)


def test_verify_rejects_hs256_signed_with_the_public_key_as_secret() -> None:
    rsa_key = SigningKey.generate("RS256")
    public_pem = rsa_key.public.public_key.public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    signing_input = f"{segment(make_header(rsa_key, alg='HS256'))}.{segment(make_payload())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(errors.AlgorithmNotAllowed):
        check(f"{signing_input}.{b64url(mac)}", rsa_key)


def test_verify_rejects_a_header_alg_that_differs_from_the_key_alg(ed_key: SigningKey) -> None:
    with pytest.raises(errors.AlgorithmNotAllowed):
        check(forge(ed_key, header=make_header(ed_key, alg="ES256")), ed_key)


@pytest.mark.parametrize("member", ["jku", "x5u", "x5c", "jwk", "crit", "b64", "cty", "zip"])
def test_verify_rejects_any_header_member_outside_the_allowlist(
    ed_key: SigningKey, member: str
) -> None:
    header = make_header(ed_key, **{member: "x"})
    with pytest.raises(errors.HeaderNotAllowed):
        check(forge(ed_key, header=header), ed_key)


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "wsauth+JWT", 7])
def test_verify_rejects_a_missing_or_wrong_typ(ed_key: SigningKey, typ: Any) -> None:
    with pytest.raises(errors.WrongTokenType):
        check(forge(ed_key, header=make_header(ed_key, typ=typ)), ed_key)


@pytest.mark.parametrize("kid", [None, 5, ["a"], "../../etc/passwd", "' OR 1=1 --", "k" * 10_000])
def test_verify_rejects_hostile_or_missing_kids(ed_key: SigningKey, kid: Any) -> None:
    header = make_header(ed_key, kid=kid)
    with pytest.raises((errors.UnknownKey, errors.TokenTooLarge)):
        check(forge(ed_key, header=header), ed_key)


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"])
def test_verify_rejects_a_token_missing_a_required_claim(ed_key: SigningKey, claim: str) -> None:
    with pytest.raises(errors.InvalidClaims):
        check(forge(ed_key, payload=make_payload(**{claim: None})), ed_key)


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": str(NOW + 30)},
        {"exp": float(NOW + 30)},
        {"iat": True},
        {"sub": 42},
        {"sub": ""},
        {"aud": [AUDIENCE]},
        {"iss": None, "jti": "short"},
        {"jti": 123},
        {"sid": 1},
        {"admin": True},
    ],
)
def test_verify_rejects_claims_of_the_wrong_json_type(
    ed_key: SigningKey, changes: dict[str, Any]
) -> None:
    with pytest.raises(errors.InvalidClaims):
        check(forge(ed_key, payload=make_payload(**changes)), ed_key)


def test_verify_rejects_a_lifetime_over_the_cap(ed_key: SigningKey) -> None:
    with pytest.raises(errors.LifetimeTooLong):
        check(forge(ed_key, payload=make_payload(exp=NOW + 301)), ed_key)


def test_verify_accepts_up_to_the_leeway_after_exp_and_not_at_it(ed_key: SigningKey) -> None:
    token = forge(ed_key)
    assert check(token, ed_key, now=NOW + 30 + 4.999).sub == "alice"
    with pytest.raises(errors.Expired):
        check(token, ed_key, now=NOW + 30 + 5)


def test_verify_accepts_nbf_within_the_leeway_and_not_beyond(ed_key: SigningKey) -> None:
    token = forge(ed_key)
    assert check(token, ed_key, now=NOW - 5).sub == "alice"
    with pytest.raises(errors.NotYetValid):
        check(token, ed_key, now=NOW - 5.001)


def test_verify_rejects_times_out_of_order(ed_key: SigningKey) -> None:
    with pytest.raises(errors.InvalidClaims):
        check(forge(ed_key, payload=make_payload(nbf=NOW + 40)), ed_key)


@pytest.mark.parametrize(
    ("issuer", "audience", "error"),
    [
        (ISSUER + ".evil", AUDIENCE, errors.WrongIssuer),
        ("https://issuer.tes", AUDIENCE, errors.WrongIssuer),
        (ISSUER, AUDIENCE + "x", errors.WrongAudience),
        (ISSUER, AUDIENCE.upper(), errors.WrongAudience),
    ],
)
def test_verify_rejects_issuer_and_audience_lookalikes(
    ed_key: SigningKey, issuer: str, audience: str, error: type[Exception]
) -> None:
    token = forge(ed_key, payload=make_payload(iss=issuer, aud=audience))
    with pytest.raises(error):
        check(token, ed_key)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a",
        "a.b",
        "a.b.c.d",
        "a.b.c.d.e",
        "!!!.???.***",
        "é.é.é",
        "eyJhbGciOiJFZERTQSJ9==.e30.AA",
    ],
)
def test_verify_rejects_malformed_compact_serializations(ed_key: SigningKey, token: str) -> None:
    with pytest.raises((errors.MalformedToken, errors.TokenMissing)):
        check(token, ed_key)


def test_verify_rejects_a_stripped_signature(ed_key: SigningKey) -> None:
    header, payload, _ = forge(ed_key).split(".")
    with pytest.raises(errors.BadSignature):
        check(f"{header}.{payload}.", ed_key)


def test_verify_rejects_a_non_canonical_signature_encoding(ed_key: SigningKey) -> None:
    token = forge(ed_key)
    head, signature = token.rsplit(".", 1)
    # Ed25519 signatures are 64 bytes: 86 base64url characters whose last carries
    # 4 unused bits. Setting one of them decodes to the same bytes but is not canonical.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    tweaked = signature[:-1] + alphabet[last ^ 1]
    with pytest.raises(errors.MalformedToken):
        check(f"{head}.{tweaked}", ed_key)


@pytest.mark.parametrize("value", [[1, 2], "text", 3, None])
def test_verify_rejects_headers_and_payloads_that_are_not_json_objects(
    ed_key: SigningKey, value: Any
) -> None:
    good_header = segment(make_header(ed_key))
    with pytest.raises(errors.MalformedToken):
        check(f"{segment(value)}.{segment(make_payload())}.AA", ed_key)
    signing_input = f"{good_header}.{segment(value)}"
    token = f"{signing_input}.{b64url(ed_key.sign(signing_input.encode()))}"
    with pytest.raises(errors.MalformedToken):
        check(token, ed_key)


def test_verify_rejects_duplicate_json_members(ed_key: SigningKey) -> None:
    raw = json.dumps(make_payload())[:-1] + ', "sub": "mallory"}'
    signing_input = f"{segment(make_header(ed_key))}.{b64url(raw.encode())}"
    token = f"{signing_input}.{b64url(ed_key.sign(signing_input.encode()))}"
    with pytest.raises(errors.MalformedToken):
        check(token, ed_key)


def test_verify_rejects_an_oversized_token_before_parsing_it(ed_key: SigningKey) -> None:
    with pytest.raises(errors.TokenTooLarge):
        check("A" * (MAX_TOKEN_BYTES + 1), ed_key)


def test_verify_rejects_a_signed_token_over_the_size_cap(ed_key: SigningKey) -> None:
    token = forge(ed_key, payload=make_payload(scope="x" * 1000, sid="s" * 128, sub="u" * 256))
    assert len(token) < MAX_TOKEN_BYTES
    big = forge(ed_key, header=make_header(ed_key, kid="k" * 4000))
    with pytest.raises(errors.TokenTooLarge):
        check(big, ed_key)


def test_mint_refuses_an_unprintable_subject(ed_key: SigningKey) -> None:
    with pytest.raises(errors.InvalidClaims):
        mint(key=ed_key, issuer=ISSUER, audience=AUDIENCE, subject="a\nb", now=NOW, ttl=30)


# --- the fast paths of verify() (docs/performance.md) ------------------------


@pytest.mark.parametrize("length", range(2, 14))
def test_strict_decode_agrees_with_decode_and_reencode(length: int) -> None:
    # _decode checks the unused bits of the last character instead of
    # re-encoding; for every last character it must decide as the round trip does.
    from wsauth.shared.core.tokens import _decode

    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for last in alphabet:
        text = "A" * (length - 1) + last
        try:
            expected: bytes | None = base64.urlsafe_b64decode(text + "=" * (-length % 4))
            if b64url(expected) != text:
                expected = None
        except ValueError:
            expected = None
        try:
            got: bytes | None = _decode(text.encode())
        except errors.MalformedToken:
            got = None
        assert got == expected, (length, last)


def test_a_remembered_header_still_needs_its_key_in_the_keyset(ed_key: SigningKey) -> None:
    # The parsed header is memoised by its bytes; the key lookup and the
    # algorithm check are not.
    token = forge(ed_key)
    assert check(token, ed_key).kid == ed_key.kid
    with pytest.raises(errors.UnknownKey):
        check(token, SigningKey.generate("EdDSA"))


def test_a_remembered_header_is_checked_against_the_keys_algorithm(ed_key: SigningKey) -> None:
    es_key = SigningKey.generate("ES256")
    lying = forge(ed_key, header=make_header(ed_key, alg="ES256"))
    for _ in range(2):
        with pytest.raises(errors.AlgorithmNotAllowed):
            check(lying, ed_key, es_key)


@pytest.mark.parametrize("alg", [["EdDSA"], {"EdDSA": 1}, 1, None])
def test_a_header_alg_of_another_json_type_is_refused_every_time(
    ed_key: SigningKey, alg: Any
) -> None:
    token = forge(ed_key, header=make_header(ed_key, alg=alg))
    for _ in range(2):
        with pytest.raises((errors.AlgorithmNotAllowed, errors.MalformedToken)):
            check(token, ed_key)


def test_a_refused_header_is_refused_again(ed_key: SigningKey) -> None:
    token = forge(ed_key, header=make_header(ed_key, jku="https://example.com/keys"))
    for _ in range(2):
        with pytest.raises(errors.HeaderNotAllowed):
            check(token, ed_key)
