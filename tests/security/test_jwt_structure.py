"""Hostile token structure at a real gateway: refused before Redis, logged without the token.

Each forged token here would be refused by ``verify()`` alone (tests/shared);
these tests prove the whole gateway keeps that promise: the right HTTP
answer, not one Redis command, the genuine jti left in place, one log line.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.security.conftest import Probe
from tests.security.support import REMOVE, Listener, Minter, offer, segment
from wsauth.shared.core.keyset import SigningKey, VerificationKey, b64url
from wsauth.shared.core.tokens import MAX_TOKEN_BYTES
from wsauth.shared.store.keystore import KeyStore

B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _signed(minter: Minter, **header_changes: Any) -> tuple[str, str]:
    """A token with these header changes, genuinely signed by our key, its jti recorded."""
    payload = minter.payload()
    minter.record(payload["jti"])
    return minter.sign(minter.header(**header_changes), payload), payload["jti"]


# --- alg ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alg", sorted({"".join(c) for c in itertools.product(*zip("none", "NONE", strict=True))})
)
def test_alg_none_in_any_casing_is_refused_without_touching_redis(
    probe: Probe, minter: Minter, alg: str
) -> None:
    payload = minter.payload()
    minter.record(payload["jti"])
    token = f"{segment(minter.header(alg=alg))}.{segment(payload)}."
    probe.refuse_token(token, 401, "alg_not_allowed", jti=payload["jti"])


def test_a_textbook_unsigned_jwt_is_refused_without_touching_redis(
    probe: Probe, minter: Minter
) -> None:
    payload = minter.payload()
    minter.record(payload["jti"])
    token = f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(payload)}."
    probe.refuse_token(token, 401, "wrong_typ", jti=payload["jti"])


def _public_key_secrets(public: VerificationKey) -> dict[str, bytes]:
    """The public key in every form an HMAC confusion attack would try as the secret."""
    key = public.public_key
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "pem": pem,
        "pem-without-newline": pem.rstrip(b"\n"),
        "der": key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk-json": json.dumps(public.to_jwk(), separators=(",", ":")).encode(),
        "jwks-json": json.dumps({"keys": [public.to_jwk()]}).encode(),
    }


@pytest.mark.parametrize("form", ["pem", "pem-without-newline", "der", "jwk-json", "jwks-json"])
def test_hs256_signed_with_our_public_key_as_secret_is_refused_without_touching_redis(
    probe: Probe, minter: Minter, form: str
) -> None:
    payload = minter.payload()
    minter.record(payload["jti"])
    secret = _public_key_secrets(minter.key.public)[form]
    token = minter.hmac_sign(minter.header(alg="HS256"), payload, secret)
    probe.refuse_token(token, 401, "alg_not_allowed", jti=payload["jti"])


@pytest.fixture(scope="module")
def rsa_beside_ours(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    """A key store that publishes an RSA key (state next) beside a current EdDSA key."""
    store = KeyStore(tmp_path_factory.mktemp("rsa-keys"))
    store.generate("EdDSA", now=int(time.time()) - 3600)
    store.generate("RS256", now=int(time.time()))
    return store


@pytest.mark.parametrize("form", ["pem", "pem-without-newline", "der", "jwk-json"])
def test_hs256_signed_with_a_published_rsa_public_key_as_secret_is_refused(
    make_probe: Callable[..., contextlib.AbstractContextManager[Probe]],
    minter: Minter,
    rsa_beside_ours: KeyStore,
    form: str,
) -> None:
    # The textbook key confusion: HMAC keyed with the RSA public key the gateway publishes.
    store = rsa_beside_ours
    record = next(r for r in store.records() if r.alg == "RS256")
    rsa_public = store.public_keyset()[record.kid]
    payload = minter.payload()
    minter.record(payload["jti"])
    secret = _public_key_secrets(rsa_public)[form]
    token = minter.hmac_sign(minter.header(alg="HS256", kid=record.kid), payload, secret)
    with make_probe(keys_dir=store.dir) as probe:
        assert record.kid in probe.gateway.app.gateway.keys.keyset
        probe.refuse_token(token, 401, "alg_not_allowed", jti=payload["jti"])


# "Ed25519" is the RFC 9864 name of EdDSA on an Ed25519 key, accepted as such
# (tests/rotation/test_ed25519_name.py); "Ed448" names another curve.
@pytest.mark.parametrize("alg", ["ES256", "RS256", "eddsa", "EDDSA", "Ed448", "EdDSA ", ""])
def test_a_header_alg_other_than_the_alg_of_the_key_named_by_kid_is_refused(
    probe: Probe, minter: Minter, alg: str
) -> None:
    token, jti = _signed(minter, alg=alg)
    probe.refuse_token(token, 401, "alg_not_allowed", jti=jti)


_FOREIGN_KEYS: dict[str, Any] = {}


def _foreign_key(alg: str) -> Any:
    """A key of the kind ``alg`` signs with (generated once per run)."""
    kind = {"RS": "rsa", "PS": "rsa", "ES256K": "k1", "ES384": "p384", "ES512": "p521"}
    name = kind.get(alg, kind.get(alg[:2], "hmac"))
    if name not in _FOREIGN_KEYS:
        if name == "rsa":
            _FOREIGN_KEYS[name] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif name == "hmac":
            _FOREIGN_KEYS[name] = b"a shared secret that a gateway must never accept" * 2
        else:
            curve = {"k1": ec.SECP256K1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}[name]
            _FOREIGN_KEYS[name] = ec.generate_private_key(curve)
    return _FOREIGN_KEYS[name]


@pytest.mark.parametrize(
    "alg",
    [
        "HS256",
        "HS384",
        "HS512",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256K",
        "ES384",
        "ES512",
    ],
)
def test_a_disallowed_algorithm_is_refused_without_touching_redis(
    probe: Probe, minter: Minter, alg: str
) -> None:
    payload = minter.payload()
    minter.record(payload["jti"])
    header = minter.header(alg=alg)
    token = jwt.encode(payload, _foreign_key(alg), algorithm=alg, headers=header)
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["alg"] == alg
    probe.refuse_token(token, 401, "alg_not_allowed", jti=payload["jti"])


@pytest.mark.parametrize("alg", [None, 1, ["EdDSA"], {"alg": "EdDSA"}, True])
def test_a_non_string_alg_is_refused_without_touching_redis(
    probe: Probe, minter: Minter, alg: Any
) -> None:
    token, jti = _signed(minter, alg=alg)
    probe.refuse_token(token, 401, "alg_not_allowed", jti=jti)


# --- signatures -----------------------------------------------------------------------


def _resign(token: str, signature: str) -> str:
    return token.rsplit(".", 1)[0] + "." + signature


def _flip_first_bit(signature: str) -> str:
    raw = base64.urlsafe_b64decode(signature + "==")
    return b64url(bytes([raw[0] ^ 1]) + raw[1:])


def _non_canonical(signature: str) -> str:
    """The same bytes, but with the unused trailing bits of the last character set."""
    last = B64URL_ALPHABET.index(signature[-1])
    unused_bits = (6 * len(signature)) % 8
    assert unused_bits and last % (1 << unused_bits) == 0
    return signature[:-1] + B64URL_ALPHABET[last | 1]


SIGNATURE_CASES: dict[str, tuple[Any, str]] = {
    "truncated-by-one-character": (lambda s: s[:-1], "token_malformed"),
    "truncated-by-two-characters": (lambda s: s[:-2], "bad_signature"),
    "truncated-to-half": (
        lambda s: b64url(base64.urlsafe_b64decode(s + "==")[:32]),
        "bad_signature",
    ),
    "one-byte-appended": (
        lambda s: b64url(base64.urlsafe_b64decode(s + "==") + b"\0"),
        "bad_signature",
    ),
    "one-bit-flipped": (lambda s: _flip_first_bit(s), "bad_signature"),
    "all-zero-bytes": (lambda s: b64url(bytes(64)), "bad_signature"),
    "non-canonical-trailing-bits": (_non_canonical, "token_malformed"),
    "padded": (lambda s: s + "==", "token_malformed"),
    "standard-base64-character": (lambda s: "+" + s[1:], "token_malformed"),
    "stripped": (lambda s: "", "bad_signature"),
}


@pytest.mark.parametrize("case", sorted(SIGNATURE_CASES))
def test_a_malformed_truncated_or_non_canonical_signature_is_refused(
    probe: Probe, minter: Minter, case: str
) -> None:
    change, code = SIGNATURE_CASES[case]
    token, jti = _signed(minter)
    hostile = _resign(token, change(token.rsplit(".", 1)[1]))
    assert hostile != token
    probe.refuse_token(hostile, 401, code, jti=jti)


def test_a_signature_with_a_space_inside_is_refused(probe: Probe, minter: Minter) -> None:
    token, jti = _signed(minter)
    signature = token.rsplit(".", 1)[1]
    hostile = _resign(token, signature[:40] + " " + signature[40:])
    probe.refuse_token(hostile, 401, "token_malformed", jti=jti, via="query")


def test_a_signature_transplanted_from_another_token_is_refused(
    probe: Probe, minter: Minter
) -> None:
    token, jti = _signed(minter)
    other = minter.sign(minter.header(), minter.payload(sub="mallory"))
    hostile = _resign(token, other.rsplit(".", 1)[1])
    probe.refuse_token(hostile, 401, "bad_signature", jti=jti)


def test_a_payload_changed_after_signing_is_refused_and_the_genuine_jti_stays(
    probe: Probe, minter: Minter
) -> None:
    token, jti = _signed(minter)
    header, _payload, signature = token.split(".")
    changed = minter.payload(jti=jti, sub="admin")
    probe.refuse_token(f"{header}.{segment(changed)}.{signature}", 401, "bad_signature", jti=jti)


def test_a_token_signed_by_a_key_the_gateway_does_not_know_is_refused(
    probe: Probe, minter: Minter
) -> None:
    stranger = SigningKey.generate("EdDSA")
    payload = minter.payload()
    minter.record(payload["jti"])
    token = minter.sign(minter.header(kid=stranger.kid), payload, key=stranger)
    probe.refuse_token(token, 401, "unknown_kid", jti=payload["jti"])


def test_our_kid_with_a_signature_by_another_key_is_refused(probe: Probe, minter: Minter) -> None:
    payload = minter.payload()
    minter.record(payload["jti"])
    token = minter.sign(minter.header(), payload, key=SigningKey.generate("EdDSA"))
    probe.refuse_token(token, 401, "bad_signature", jti=payload["jti"])


# --- segments -------------------------------------------------------------------------


SEGMENT_CASES: dict[str, tuple[Callable[[str, str, str], str], str]] = {
    "one": (lambda h, p, s: h, "token_malformed"),
    "two": (lambda h, p, s: f"{h}.{p}", "token_malformed"),
    "four": (lambda h, p, s: f"{h}.{p}.{s}.{s}", "token_malformed"),
    "five-like-a-jwe": (lambda h, p, s: f"{h}.{p}.{s}.{p}.{s}", "token_malformed"),
    "three-empty": (lambda h, p, s: "..", "token_malformed"),
    "empty-header": (lambda h, p, s: f".{p}.{s}", "token_malformed"),
    # The signature is checked before the payload is read: the signature fails first.
    "empty-payload": (lambda h, p, s: f"{h}..{s}", "bad_signature"),
}


@pytest.mark.parametrize("case", sorted(SEGMENT_CASES))
def test_a_token_with_other_than_three_segments_is_refused(
    probe: Probe, minter: Minter, case: str
) -> None:
    token, jti = _signed(minter)
    build, code = SEGMENT_CASES[case]
    probe.refuse_token(build(*token.split(".")), 401, code, jti=jti)


# --- header members -------------------------------------------------------------------


@pytest.mark.parametrize(
    "members",
    [
        {"crit": []},
        {"crit": ["exp"]},
        {"crit": ["b64"], "b64": False},
        {"crit": "b64"},
        {"crit": ["wsauth-anything"], "wsauth-anything": True},
    ],
    ids=["empty", "registered-claim", "b64", "not-a-list", "private"],
)
def test_any_crit_header_is_refused(probe: Probe, minter: Minter, members: dict[str, Any]) -> None:
    token, jti = _signed(minter, **members)
    probe.refuse_token(token, 401, "header_not_allowed", jti=jti)


def test_b64_false_with_an_unencoded_payload_is_refused(probe: Probe, minter: Minter) -> None:
    # RFC 7797: the payload travels as raw JSON. Its dots (in iss) break the compact form.
    payload = minter.payload()
    minter.record(payload["jti"])
    header = segment(minter.header(b64=False))
    raw_payload = json.dumps(payload, separators=(",", ":"))
    signing_input = f"{header}.{raw_payload}".encode()
    token = f"{header}.{raw_payload}.{b64url(minter.key.sign(signing_input))}"
    probe.refuse_token(token, 401, "token_malformed", jti=payload["jti"], via="query")


def test_b64_false_alone_is_refused(probe: Probe, minter: Minter) -> None:
    token, jti = _signed(minter, b64=False)
    probe.refuse_token(token, 401, "header_not_allowed", jti=jti)


@pytest.mark.parametrize("member", ["jku", "x5u", "x5c", "jwk", "x5t", "x5t#S256"])
def test_key_locating_headers_are_refused_and_the_gateway_fetches_nothing(
    probe: Probe, minter: Minter, listener: Listener, member: str
) -> None:
    attacker = SigningKey.generate("EdDSA")
    value: Any = {
        "jku": listener.url("/.well-known/jwks.json"),
        "x5u": listener.url("/cert.pem"),
        "x5c": [base64.b64encode(b"\x30\x82" + bytes(64)).decode()],
        "jwk": attacker.public.to_jwk(),
        "x5t": b64url(bytes(20)),
        "x5t#S256": b64url(bytes(32)),
    }[member]
    payload = minter.payload()
    minter.record(payload["jti"])
    # Signed by the attacker's key and naming it, as a real attack would.
    token = minter.sign(minter.header(kid=attacker.kid, **{member: value}), payload, key=attacker)
    probe.refuse_token(token, 401, "header_not_allowed", jti=payload["jti"])
    assert listener.connections(within=0.3) == 0, "the gateway connected out"


@pytest.mark.parametrize(
    "members",
    [{"cty": "JWT"}, {"zip": "DEF"}, {"enc": "A256GCM"}, {"exp": 1}, {"iss": "x"}, {"": ""}],
    ids=["cty", "zip", "enc", "exp", "iss", "empty-name"],
)
def test_any_other_header_member_is_refused(
    probe: Probe, minter: Minter, members: dict[str, Any]
) -> None:
    token, jti = _signed(minter, **members)
    probe.refuse_token(token, 401, "header_not_allowed", jti=jti)


# --- kid ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../../../etc/passwd",
        "../keys/private/current.pem",
        "/dev/zero",
        "' OR '1'='1",
        "1; DROP TABLE keys; --",
        "kid\x00",
        "%00",
        "*",
        "",
        "K" * 2048,
        1,
        1.5,
        True,
        None,
        ["kid"],
        {"kid": "kid"},
        REMOVE,
    ],
    ids=[
        "path-traversal",
        "path-to-a-private-key",
        "device",
        "sql-quote",
        "sql-statement",
        "nul",
        "percent-nul",
        "wildcard",
        "empty",
        "2KB",
        "integer",
        "float",
        "boolean",
        "null",
        "list",
        "object",
        "missing",
    ],
)
def test_a_hostile_or_missing_kid_is_refused_as_unknown(
    probe: Probe, minter: Minter, kid: Any
) -> None:
    token, jti = _signed(minter, kid=kid)
    probe.refuse_token(token, 401, "unknown_kid", jti=jti)


@pytest.mark.parametrize(
    "change",
    [
        lambda kid: kid + "/",
        lambda kid: kid.swapcase(),
        lambda kid: " " + kid,
        lambda kid: kid[:-1],
    ],
    ids=["suffix", "other-case", "leading-space", "truncated"],
)
def test_our_kid_altered_is_refused_as_unknown(
    probe: Probe, minter: Minter, change: Callable[[str], str]
) -> None:
    token, jti = _signed(minter, kid=change(minter.key.kid))
    probe.refuse_token(token, 401, "unknown_kid", jti=jti)


def test_a_10kb_kid_is_refused_as_too_large_before_parsing(probe: Probe, minter: Minter) -> None:
    token, jti = _signed(minter, kid="K" * 10 * 1024)
    assert len(token) > MAX_TOKEN_BYTES
    probe.refuse_token(token, 401, "token_too_large", jti=jti)


# --- typ ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typ",
    [
        REMOVE,
        "JWT",
        "jwt",
        "at+jwt",
        "WSAUTH+JWT",
        "application/wsauth+jwt",
        "wsauth+jwt ",
        "",
        None,
        1,
        ["wsauth+jwt"],
    ],
    ids=[
        "missing",
        "JWT",
        "jwt",
        "access-token",
        "upper-case",
        "media-type",
        "trailing-space",
        "empty",
        "null",
        "integer",
        "list",
    ],
)
def test_a_missing_or_wrong_typ_is_refused(probe: Probe, minter: Minter, typ: Any) -> None:
    token, jti = _signed(minter, typ=typ)
    probe.refuse_token(token, 401, "wrong_typ", jti=jti)


# --- JSON and base64url ---------------------------------------------------------------

NOT_OBJECTS = {
    "array": b"[]",
    "string": b'"wsauth"',
    "number": b"1",
    "null": b"null",
    "truncated": b'{"alg":"EdDSA"',
    "invalid-utf8": b'{"alg":"\xff\xfe"}',
    "nan": b'{"alg":NaN}',
    "trailing-garbage": b"{}x",
    "empty": b"",
}


@pytest.mark.parametrize("case", sorted(NOT_OBJECTS))
def test_a_header_that_is_not_a_json_object_is_refused(
    probe: Probe, minter: Minter, case: str
) -> None:
    payload = minter.payload()
    minter.record(payload["jti"])
    token = minter.sign(NOT_OBJECTS[case], payload)
    probe.refuse_token(token, 401, "token_malformed", jti=payload["jti"])


@pytest.mark.parametrize("case", sorted(NOT_OBJECTS))
def test_a_signed_payload_that_is_not_a_json_object_is_refused(
    probe: Probe, minter: Minter, case: str
) -> None:
    token = minter.sign(minter.header(), NOT_OBJECTS[case])
    probe.refuse_token(token, 401, "token_malformed")


def test_a_header_with_a_duplicate_member_is_refused(probe: Probe, minter: Minter) -> None:
    payload = minter.payload()
    minter.record(payload["jti"])
    header = json.dumps(minter.header())[:-1] + ', "alg": "none"}'
    token = minter.sign(header.encode(), payload)
    probe.refuse_token(token, 401, "token_malformed", jti=payload["jti"])


def test_a_signed_payload_with_a_duplicate_sub_is_refused(probe: Probe, minter: Minter) -> None:
    payload = minter.payload()
    minter.record(payload["jti"])
    raw = json.dumps(payload)[:-1] + ', "sub": "admin"}'
    probe.refuse_token(minter.sign(minter.header(), raw.encode()), 401, "token_malformed")
    assert minter.recorded(payload["jti"])


BAD_BASE64URL = {
    "plus": ("+", "authorization"),
    "slash": ("/", "authorization"),
    "padding": ("=", "query"),
    "percent": ("%", "query"),
    "asterisk": ("*", "query"),
    "space": (" ", "query"),
    "tab": ("\t", "query"),
    "non-ascii": ("é", "query"),
    "nul": ("\x00", "query"),
}


@pytest.mark.parametrize("case", sorted(BAD_BASE64URL))
def test_a_header_segment_that_is_not_base64url_is_refused(
    probe: Probe, minter: Minter, case: str
) -> None:
    character, via = BAD_BASE64URL[case]
    token, jti = _signed(minter)
    header, payload, signature = token.split(".")
    hostile = f"{header[:8]}{character}{header[9:]}.{payload}.{signature}"
    probe.refuse_token(hostile, 401, "token_malformed", jti=jti, via=via)


def test_a_header_segment_of_impossible_length_is_refused(probe: Probe, minter: Minter) -> None:
    token, jti = _signed(minter)
    header, payload, signature = token.split(".")
    probe.refuse_token(f"{header}A.{payload}.{signature}", 401, "token_malformed", jti=jti)


# --- size -----------------------------------------------------------------------------


def test_a_token_one_byte_over_the_cap_is_refused_as_too_large(probe: Probe) -> None:
    probe.refuse_token("a" * (MAX_TOKEN_BYTES + 1), 401, "token_too_large")


def test_a_genuinely_signed_token_over_the_cap_is_refused_and_its_jti_stays(
    probe: Probe, minter: Minter
) -> None:
    payload = minter.payload(scope="s" * 1024, pad="p" * 3000)
    minter.record(payload["jti"])
    token = minter.sign(minter.header(), payload)
    assert len(token) > MAX_TOKEN_BYTES
    probe.refuse_token(token, 401, "token_too_large", jti=payload["jti"])


@pytest.mark.parametrize("via", ["authorization", "subprotocol", "query"])
def test_an_11kb_token_is_refused_as_too_large_in_every_source(
    probe: Probe, minter: Minter, via: str
) -> None:
    token, jti = _signed(minter, kid="K" * (8 * 1024 + 64))
    assert 11 * 1024 < len(token) < 12 * 1024
    probe.refuse_token(token, 401, "token_too_large", jti=jti, via=via)


def test_a_token_beyond_the_http_header_limit_gets_431_without_touching_redis(
    probe: Probe, minter: Minter
) -> None:
    # Over the gateway's header cap (16 KiB) the HTTP layer refuses the request before
    # the gateway sees it: a 431 answer (not a silent close), nothing spent, one line.
    token, jti = _signed(minter, kid="K" * 16 * 1024)
    headers, path = offer(token, "authorization")
    answer, seen = probe.send(headers, path=path)
    assert (answer.status, answer.error) == (431, "headers_too_large")
    assert seen.commands == {}
    assert seen.dbsize_change == 0
    assert minter.recorded(jti)
    probe.log.expect_refusal("headers_too_large", token)
