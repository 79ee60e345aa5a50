"""The token format: pure :func:`mint` and :func:`verify`, no I/O, no globals.

A token is a JWS compact serialization (RFC 7515) of a JWT (RFC 7519)::

    header  {"alg": "EdDSA"|"Ed25519"|"ES256"|"RS256", "kid": <RFC 7638 thumbprint>,
             "typ": "wsauth+jwt"}
    claims  {"iss", "aud", "sub", "iat", "nbf", "exp", "jti"} required, {"sid", "scope"} optional

:func:`verify` never lets the token choose how it is checked (RFC 8725 §3.1):
the header is an allowlist of exactly three members, the key is looked up by
``kid`` and the key alone fixes the algorithm (for an Ed25519 key, under
either of its names: ``EdDSA``, deprecated by RFC 9864, or ``Ed25519``). The signature is checked by
the key (:meth:`wsauth.shared.core.keyset.VerificationKey.verify`: libsodium for EdDSA,
PyJWT's algorithm objects otherwise); the claim checks are ours, because PyJWT does not
check ``typ``, only requires claims when told to, accepts numeric strings for
times and accepts lifetimes of any length.

The order of checks is cheapest first, so a forged token costs one base64
decode and one signature check at most, and never a Redis command.
"""

from __future__ import annotations

import binascii
import functools
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any, NewType

from wsauth.shared.core.errors import (
    AlgorithmNotAllowed,
    BadSignature,
    Expired,
    HeaderNotAllowed,
    InvalidClaims,
    LifetimeTooLong,
    MalformedToken,
    NotYetValid,
    TokenMissing,
    TokenTooLarge,
    UnknownKey,
    WrongAudience,
    WrongIssuer,
    WrongTokenType,
)
from wsauth.shared.core.keyset import ED25519_NAMES, Keyset, Kid, SigningKey, b64url, b64url_bytes
from wsauth.shared.core.strict_json import StrictJson

Jti = NewType("Jti", str)

TOKEN_TYPE = "wsauth+jwt"  # noqa: S105 - a media type, not a secret
MAX_TOKEN_BYTES = 4096
HEADER_MEMBERS = frozenset({"alg", "kid", "typ"})
REQUIRED_CLAIMS = frozenset({"iss", "aud", "sub", "iat", "nbf", "exp", "jti"})
OPTIONAL_CLAIMS = frozenset({"sid", "scope"})
MAX_SUB_LENGTH = 256
MAX_SID_LENGTH = 128
MAX_SCOPE_LENGTH = 1024

_B64URL = re.compile(rb"[A-Za-z0-9_-]*")
_B64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_BASE64 = bytes.maketrans(b"-_", b"+/")
# By length mod 4, the characters that may end a canonical segment: 2 leftover
# characters carry 8 bits (the last character's low 4 bits unused), 3 carry 16
# (low 2 bits unused).
_CANONICAL_LAST = {
    2: frozenset(_B64URL_ALPHABET[index] for index in range(0, 64, 16)),
    3: frozenset(_B64URL_ALPHABET[index] for index in range(0, 64, 4)),
}
_JTI = re.compile(r"[A-Za-z0-9_-]{22}")


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified claims of a token."""

    iss: str
    aud: str
    sub: str
    iat: int
    nbf: int
    exp: int
    jti: Jti
    kid: Kid
    sid: str | None = None
    scope: str | None = None


def new_jti() -> Jti:
    """128 random bits, base64url without padding (22 characters)."""
    return Jti(b64url(secrets.token_bytes(16)))


def mint(
    *,
    key: SigningKey,
    issuer: str,
    audience: str,
    subject: str,
    now: int,
    ttl: int,
    jti: Jti | None = None,
    sid: str | None = None,
    scope: str | None = None,
) -> tuple[str, Claims]:
    """Sign a token for ``subject``; return it and its claims.

    ``now`` is passed in (seconds since the epoch), so minting is pure apart
    from the random ``jti`` drawn when none is given.

    Raises:
        InvalidClaims: the subject, sid or scope is not a valid value.
    """
    _check_text(subject, "sub", MAX_SUB_LENGTH)
    if sid is not None:
        _check_text(sid, "sid", MAX_SID_LENGTH)
    if scope is not None:
        _check_text(scope, "scope", MAX_SCOPE_LENGTH)
    claims = Claims(
        iss=issuer,
        aud=audience,
        sub=subject,
        iat=now,
        nbf=now,
        exp=now + ttl,
        jti=jti or new_jti(),
        kid=key.kid,
        sid=sid,
        scope=scope,
    )
    payload: dict[str, Any] = {
        "iss": claims.iss,
        "aud": claims.aud,
        "sub": claims.sub,
        "iat": claims.iat,
        "nbf": claims.nbf,
        "exp": claims.exp,
        "jti": claims.jti,
    }
    if sid is not None:
        payload["sid"] = sid
    if scope is not None:
        payload["scope"] = scope
    signing_input = _header_segment(key.alg, key.kid) + b"." + _segment(payload)
    token = signing_input + b"." + b64url_bytes(key.sign(signing_input))
    return token.decode("ascii"), claims


def verify(
    token: str,
    *,
    keyset: Keyset,
    issuer: str,
    audience: str,
    now: float,
    leeway: int,
    max_ttl: int,
) -> Claims:
    """Check a token completely and return its claims. No I/O.

    Raises:
        TokenMissing, TokenTooLarge, MalformedToken: not a compact JWS we parse.
        HeaderNotAllowed, WrongTokenType: the header is outside the allowlist.
        UnknownKey, AlgorithmNotAllowed, BadSignature: the signature does not hold.
        InvalidClaims: a claim is missing, of the wrong type or unknown.
        Expired, NotYetValid, LifetimeTooLong: the times do not hold (with leeway).
        WrongIssuer, WrongAudience: the token is for someone else.
    """
    if not isinstance(token, str) or not token:
        raise TokenMissing()
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenTooLarge(length=len(token))
    if not token.isascii():
        raise MalformedToken("non-ASCII token")
    raw = token.encode("ascii")
    if raw.count(b".") != 2:
        raise MalformedToken("a token has exactly three segments")
    header_segment, payload_segment, signature_segment = raw.split(b".")

    alg, kid = _header(header_segment)
    key = keyset.get(kid)
    if key is None:
        raise UnknownKey()
    if alg != key.alg and not (alg in ED25519_NAMES and key.alg in ED25519_NAMES):
        # RFC 9864: "Ed25519" and the deprecated "EdDSA" both name Ed25519 for an Ed25519 key.
        raise AlgorithmNotAllowed(key_alg=key.alg)

    signature = _decode(signature_segment)
    if not key.verify(header_segment + b"." + payload_segment, signature):
        raise BadSignature(kid=kid)

    payload = _json_object(_decode(payload_segment), "payload")
    claims = _claims(payload, Kid(kid))
    _check_times(claims, now=now, leeway=leeway, max_ttl=max_ttl)
    if claims.iss != issuer:
        raise WrongIssuer()
    if claims.aud != audience:
        raise WrongAudience()
    return claims


# --- helpers --------------------------------------------------------------


# json.dumps builds a new encoder at every call when given separators; this one is kept.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def _segment(value: dict[str, Any]) -> bytes:
    return b64url_bytes(_COMPACT_JSON.encode(value).encode())


@functools.lru_cache(maxsize=16)
def _header_segment(alg: str, kid: Kid) -> bytes:
    """The encoded header: the same for every token of one key, so encoded once."""
    return _segment({"alg": alg, "kid": kid, "typ": TOKEN_TYPE})


@functools.lru_cache(maxsize=64)
def _header(segment: bytes) -> tuple[Any, Kid]:
    """The ``alg`` member and the kid of an encoded header that passes the allowlist.

    A pure function of the bytes, so memoised: every token of one key has the
    same header segment. Only headers that pass are cached (a raised error is
    not), so a flood of bad headers is refused by the same checks each time.

    Raises:
        MalformedToken, HeaderNotAllowed, WrongTokenType, UnknownKey.
    """
    header = _json_object(_decode(segment), "header")
    if not HEADER_MEMBERS.issuperset(header):
        raise HeaderNotAllowed(members=sorted(set(header) - HEADER_MEMBERS)[:5])
    if header.get("typ") != TOKEN_TYPE:
        raise WrongTokenType()
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise UnknownKey("kid missing or not a string")
    alg = header.get("alg")
    # A JSON array or object is mutable: hand out an immutable stand-in (it
    # matches no key's alg, as the original would not).
    return (alg if alg is None or isinstance(alg, str | int | float) else repr(alg)), Kid(kid)


def _decode(segment: bytes) -> bytes:
    """Strict base64url: no padding, no foreign characters, canonical trailing bits."""
    if len(segment) % 4 == 1 or not _B64URL.fullmatch(segment):
        raise MalformedToken("invalid base64url")
    # The unused low bits of the last character must be zero (RFC 4648 §3.5):
    # else two spellings would decode to the same bytes.
    partial = len(segment) % 4
    if partial and segment[-1] not in _CANONICAL_LAST[partial]:
        raise MalformedToken("non-canonical base64url")
    try:
        return binascii.a2b_base64(
            segment.translate(_TO_BASE64) + b"=" * (-len(segment) % 4), strict_mode=True
        )
    except binascii.Error:
        raise MalformedToken("invalid base64url") from None


_STRICT_JSON = StrictJson(MalformedToken)


def _json_object(data: bytes, part: str) -> dict[str, Any]:
    try:
        value = _STRICT_JSON.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedToken(f"{part} is not JSON") from None
    if not isinstance(value, dict):
        raise MalformedToken(f"{part} is not a JSON object")
    return value


def _check_text(value: Any, name: str, max_length: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= max_length or not value.isprintable():
        raise InvalidClaims(f"{name} must be 1 to {max_length} printable characters", claim=name)
    return value


def _int_claim(payload: dict[str, Any], name: str) -> int:
    value = payload[name]
    # bool is an int in Python; numeric strings and floats are refused outright.
    if type(value) is not int or not 0 <= value < 2**53:
        raise InvalidClaims(f"{name} must be an integer NumericDate", claim=name)
    return value


def _claims(payload: dict[str, Any], kid: Kid) -> Claims:
    missing = REQUIRED_CLAIMS - payload.keys()
    if missing:
        raise InvalidClaims("missing claims", claims=sorted(missing))
    unknown = payload.keys() - REQUIRED_CLAIMS - OPTIONAL_CLAIMS
    if unknown:
        raise InvalidClaims("unknown claims", claims=sorted(unknown)[:5])
    jti = payload["jti"]
    if not isinstance(jti, str) or not _JTI.fullmatch(jti):
        raise InvalidClaims("jti must be 22 base64url characters", claim="jti")
    if not isinstance(payload["iss"], str) or not isinstance(payload["aud"], str):
        raise InvalidClaims("iss and aud must be strings", claim="iss/aud")
    sid = payload.get("sid")
    scope = payload.get("scope")
    return Claims(
        iss=payload["iss"],
        aud=payload["aud"],
        sub=_check_text(payload["sub"], "sub", MAX_SUB_LENGTH),
        iat=_int_claim(payload, "iat"),
        nbf=_int_claim(payload, "nbf"),
        exp=_int_claim(payload, "exp"),
        jti=Jti(jti),
        kid=kid,
        sid=None if sid is None else _check_text(sid, "sid", MAX_SID_LENGTH),
        scope=None if scope is None else _check_text(scope, "scope", MAX_SCOPE_LENGTH),
    )


def _check_times(claims: Claims, *, now: float, leeway: int, max_ttl: int) -> None:
    if not claims.iat <= claims.nbf < claims.exp:
        raise InvalidClaims("times must satisfy iat <= nbf < exp", claim="exp")
    if claims.exp - claims.iat > max_ttl:
        raise LifetimeTooLong(lifetime=claims.exp - claims.iat, max_ttl=max_ttl)
    if now >= claims.exp + leeway:
        raise Expired()
    if claims.nbf > now + leeway or claims.iat > now + leeway:
        raise NotYetValid()
