"""Signing keys, public keysets, JWKS export and import, RFC 7638 key ids.

A :class:`Keyset` holds public keys only and is all a gateway ever has. A
:class:`SigningKey` holds a private key and lives only in the issuer. The key
id (``kid``) of every key is its RFC 7638 JWK thumbprint (SHA-256,
base64url), so a kid cannot be reused for a different key and a keyset can be
checked without trusting its author.

Allowed algorithms are an allowlist, each bound to exactly one key type::

    EdDSA    OKP / Ed25519   (RFC 8037; deprecated by RFC 9864, still minted by default)
    Ed25519  OKP / Ed25519   (RFC 9864, October 2025: the fully specified name)
    ES256    EC  / P-256
    RS256    RSA / at least 2048 bits

``EdDSA`` and ``Ed25519`` name the same algorithm on the same keys (RFC 9864
§2.2 deprecates the polymorphic ``EdDSA``, which could also mean Ed448 —
never accepted here). A token of an Ed25519 key is accepted under either
name (:data:`ED25519_NAMES`); a key signs with the name it was created with.
New keys are ``EdDSA`` by default because many verifiers do not know
``Ed25519`` yet — PyJWT 2.15 among them — and a gateway is not the only
reader of these tokens in every deployment; choose ``--alg Ed25519`` once
every verifier of your tokens accepts it (docs/howto/key-rotation.md).

Keys are parsed with ``cryptography`` (PEM, JWK via PyJWT). EdDSA signatures
are made and checked with libsodium (PyNaCl), which does it in about half the
time of OpenSSL here (docs/performance.md) and is at least as strict: it
refuses a non-canonical ``S``, a non-canonical or small-order public key and
a small-order ``R``, where OpenSSL refuses only the first. A keyset
refuses an Ed25519 key outside the prime-order subgroup outright. ES256 and
RS256 go through PyJWT's algorithm objects.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NewType

import nacl.bindings
import nacl.exceptions
import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import Algorithm, ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from wsauth.shared.core.errors import WsAuthError

Kid = NewType("Kid", str)

DEFAULT_ALGORITHM = "EdDSA"
ALGORITHMS = ("EdDSA", "Ed25519", "ES256", "RS256")
# The two names of Ed25519 signatures (RFC 8037 "EdDSA", RFC 9864 "Ed25519").
ED25519_NAMES = frozenset({"EdDSA", "Ed25519"})
MIN_RSA_BITS = 2048

_ALGORITHM_OBJECTS: dict[str, Algorithm] = {
    "EdDSA": OKPAlgorithm(),
    "Ed25519": OKPAlgorithm(),
    "ES256": ECAlgorithm(ECAlgorithm.SHA256),
    "RS256": RSAAlgorithm(RSAAlgorithm.SHA256),
}
# The JWK members that RFC 7638 hashes, per key type.
_THUMBPRINT_MEMBERS = {
    "OKP": ("crv", "kty", "x"),
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
}
# Members that only a private JWK has (RFC 7518 §6, RFC 8037 §2).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
ED25519_SIGNATURE_BYTES = 64

PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class InvalidKeyset(WsAuthError):
    """A JWKS (or one key in it) is refused; the reason is in the message."""

    code = "invalid_keyset"


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url_bytes(data: bytes) -> bytes:
    """Unpadded base64url (RFC 7515 §2) as ASCII bytes."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return b64url_bytes(data).decode("ascii")


def thumbprint(jwk: Mapping[str, Any]) -> Kid:
    """RFC 7638 thumbprint of a public JWK: base64url(SHA-256(canonical JSON)).

    Raises:
        InvalidKeyset: the JWK lacks a required member or has an unknown ``kty``.
    """
    members = _THUMBPRINT_MEMBERS.get(jwk.get("kty"))  # type: ignore[arg-type]
    if members is None:
        raise InvalidKeyset(f"unsupported kty {jwk.get('kty')!r}")
    try:
        canonical = {name: jwk[name] for name in members}
    except KeyError as missing:
        raise InvalidKeyset(f"JWK lacks {missing.args[0]!r}") from None
    if not all(isinstance(value, str) for value in canonical.values()):
        raise InvalidKeyset("JWK members must be strings")
    encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    return Kid(b64url(hashlib.sha256(encoded).digest()))


def _raw_ed25519(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _check_public_key(alg: str, key: Any) -> None:
    if alg in ED25519_NAMES and isinstance(key, ed25519.Ed25519PublicKey):
        # A small-order key (e.g. the identity point) lets anyone forge a
        # signature that a cofactorless check such as OpenSSL's accepts.
        if nacl.bindings.crypto_core_ed25519_is_valid_point(_raw_ed25519(key)):
            return
        raise InvalidKeyset("Ed25519 key is not a point of the prime-order subgroup")
    if alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return
        raise InvalidKeyset("ES256 needs a P-256 key")
    if alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
        if key.key_size >= MIN_RSA_BITS:
            return
        raise InvalidKeyset(f"RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} needed")
    raise InvalidKeyset(f"key type does not match alg {alg!r}")


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key, the one algorithm it verifies, and its thumbprint kid."""

    kid: Kid
    alg: str
    public_key: PublicKey = field(repr=False)
    _algorithm: Algorithm = field(repr=False, compare=False)
    # EdDSA only: the same key for libsodium, built once with the key.
    _sodium: nacl.signing.VerifyKey | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_public_key(cls, alg: str, public_key: PublicKey) -> VerificationKey:
        if alg not in ALGORITHMS:
            raise InvalidKeyset(f"algorithm {alg!r} is not allowed")
        _check_public_key(alg, public_key)
        algorithm = _ALGORITHM_OBJECTS[alg]
        jwk = algorithm.to_jwk(public_key, as_dict=True)
        sodium = None
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            sodium = nacl.signing.VerifyKey(_raw_ed25519(public_key))
        return cls(thumbprint(jwk), alg, public_key, algorithm, sodium)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> VerificationKey:
        """Parse one public JWK, checking everything a keyset author could get wrong.

        Raises:
            InvalidKeyset: private members, an algorithm outside the allowlist or
                not matching the key, a short RSA key, or a kid that is not the
                key's thumbprint.
        """
        if not isinstance(jwk, Mapping):
            raise InvalidKeyset("a key must be a JSON object")
        private = _PRIVATE_MEMBERS & set(jwk)
        if private:
            raise InvalidKeyset(f"key has private members {sorted(private)}")
        alg = jwk.get("alg")
        if alg not in ALGORITHMS:
            raise InvalidKeyset(f"key alg {alg!r} is not one of {ALGORITHMS}")
        if jwk.get("use", "sig") != "sig":
            raise InvalidKeyset("key use must be 'sig'")
        algorithm = _ALGORITHM_OBJECTS[alg]
        try:
            public_key = algorithm.from_jwk(dict(jwk))
        except Exception as error:  # PyJWT raises several types for bad JWKs
            raise InvalidKeyset(f"key does not parse: {type(error).__name__}") from None
        key = cls.from_public_key(alg, public_key)
        if jwk.get("kid") != key.kid:
            raise InvalidKeyset("kid is not the RFC 7638 thumbprint of the key")
        return key

    def to_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = self._algorithm.to_jwk(self.public_key, as_dict=True)
        jwk.update(kid=self.kid, alg=self.alg, use="sig")
        return jwk

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's signature of ``signing_input``."""
        if self._sodium is None:
            return bool(self._algorithm.verify(signing_input, self.public_key, signature))
        if len(signature) != ED25519_SIGNATURE_BYTES:
            return False
        try:
            self._sodium.verify(signing_input, signature)
        except nacl.exceptions.BadSignatureError:
            return False
        return True


class Keyset(Mapping[Kid, VerificationKey]):
    """An immutable set of public verification keys, looked up by kid."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[VerificationKey] = ()) -> None:
        by_kid: dict[Kid, VerificationKey] = {}
        for key in keys:
            if key.kid in by_kid:
                raise InvalidKeyset(f"duplicate kid {key.kid}")
            by_kid[key.kid] = key
        self._keys = by_kid

    def __getitem__(self, kid: Kid) -> VerificationKey:
        return self._keys[kid]

    def __iter__(self) -> Iterator[Kid]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"Keyset({list(self._keys)})"

    @classmethod
    def from_jwks(cls, jwks: Any) -> Keyset:
        """Parse a JWKS document (``{"keys": [...]}``); refuse it whole if any key is bad.

        Raises:
            InvalidKeyset: see :meth:`VerificationKey.from_jwk`, plus duplicate kids.
        """
        if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
            raise InvalidKeyset('a JWKS must be an object with a "keys" list')
        return cls(VerificationKey.from_jwk(jwk) for jwk in jwks["keys"])

    @classmethod
    def from_json(cls, text: str | bytes) -> Keyset:
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            raise InvalidKeyset("JWKS is not valid JSON") from None
        return cls.from_jwks(document)

    def to_jwks(self) -> dict[str, Any]:
        return {"keys": [key.to_jwk() for key in self._keys.values()]}


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key that signs with exactly one algorithm. Lives in the issuer only."""

    kid: Kid
    alg: str
    private_key: PrivateKey = field(repr=False)
    public: VerificationKey = field(repr=False, compare=False)
    # EdDSA only: the same key for libsodium, built once with the key.
    _sodium: nacl.signing.SigningKey | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_private_key(cls, alg: str, private_key: PrivateKey) -> SigningKey:
        public = VerificationKey.from_public_key(alg, private_key.public_key())
        sodium = None
        if isinstance(private_key, ed25519.Ed25519PrivateKey):
            sodium = nacl.signing.SigningKey(
                private_key.private_bytes(
                    serialization.Encoding.Raw,
                    serialization.PrivateFormat.Raw,
                    serialization.NoEncryption(),
                )
            )
        return cls(public.kid, alg, private_key, public, sodium)

    @classmethod
    def generate(cls, alg: str = DEFAULT_ALGORITHM) -> SigningKey:
        """A fresh key. Raises InvalidKeyset for an algorithm outside the allowlist."""
        private_key: PrivateKey
        if alg in ED25519_NAMES:
            private_key = ed25519.Ed25519PrivateKey.generate()
        elif alg == "ES256":
            private_key = ec.generate_private_key(ec.SECP256R1())
        elif alg == "RS256":
            private_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        else:
            raise InvalidKeyset(f"algorithm {alg!r} is not one of {ALGORITHMS}")
        return cls.from_private_key(alg, private_key)

    @classmethod
    def from_pem(cls, alg: str, pem: bytes) -> SigningKey:
        try:
            private_key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise InvalidKeyset("private key PEM does not parse") from None
        if not isinstance(
            private_key,
            ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
        ):
            raise InvalidKeyset("unsupported private key type")
        return cls.from_private_key(alg, private_key)

    def to_pem(self) -> bytes:
        """PKCS#8 PEM, unencrypted: protect it with file permissions (0600)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, signing_input: bytes) -> bytes:
        if self._sodium is not None:
            return self._sodium.sign(signing_input).signature
        return bytes(self.public._algorithm.sign(signing_input, self.private_key))
