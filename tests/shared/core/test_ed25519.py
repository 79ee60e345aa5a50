"""shared/core/keyset.py: Ed25519 through libsodium is at least as strict as through OpenSSL."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from wsauth.shared.core.keyset import InvalidKeyset, Keyset, SigningKey, VerificationKey

# The order L of the Ed25519 base point (RFC 8032 §5.1).
L = 2**252 + 27742317777372353535851937790883648493
IDENTITY = bytes([1]) + bytes(31)  # the neutral element: a small-order point
MESSAGE = b"header.payload"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate("EdDSA")


def test_signatures_are_those_of_rfc_8032_and_of_openssl(key: SigningKey) -> None:
    signature = key.sign(MESSAGE)
    assert isinstance(key.private_key, ed25519.Ed25519PrivateKey)
    assert signature == key.private_key.sign(MESSAGE)  # Ed25519 is deterministic
    assert key.public.verify(MESSAGE, signature)


def test_verify_refuses_another_message_and_a_flipped_bit(key: SigningKey) -> None:
    signature = key.sign(MESSAGE)
    assert not key.public.verify(MESSAGE + b".", signature)
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert not key.public.verify(MESSAGE, flipped)


@pytest.mark.parametrize("length", [0, 1, 32, 63, 65, 128])
def test_verify_refuses_a_signature_of_the_wrong_length(key: SigningKey, length: int) -> None:
    signature = key.sign(MESSAGE)
    wrong = (signature * 2)[:length]
    assert not key.public.verify(MESSAGE, wrong)


def test_verify_refuses_a_malleated_signature_with_s_plus_l(key: SigningKey) -> None:
    signature = key.sign(MESSAGE)
    s = int.from_bytes(signature[32:], "little")
    malleated = signature[:32] + (s + L).to_bytes(32, "little")
    assert not key.public.verify(MESSAGE, malleated)


def test_keyset_refuses_a_small_order_ed25519_key() -> None:
    # OpenSSL accepts (R = identity, S = 0) for any message under this key.
    public = ed25519.Ed25519PublicKey.from_public_bytes(IDENTITY)
    public.verify(IDENTITY + bytes(32), MESSAGE)  # the forgery the check blocks
    with pytest.raises(InvalidKeyset, match="prime-order subgroup"):
        VerificationKey.from_public_key("EdDSA", public)
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
    with pytest.raises(InvalidKeyset, match="prime-order subgroup"):
        Keyset.from_jwks({"keys": [{**jwk, "alg": "EdDSA", "use": "sig"}]})
