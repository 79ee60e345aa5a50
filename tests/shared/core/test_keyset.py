"""shared/core/keyset.py: thumbprint kids, JWKS export/import and its refusals."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from wsauth.shared.core.keyset import InvalidKeyset, Keyset, SigningKey, VerificationKey, thumbprint


def test_thumbprint_matches_rfc_7638_example() -> None:
    # RFC 7638 §3.1: the RSA key of the example and its thumbprint.
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
            "c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YG"
            "jQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdk"
            "t-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqD"
            "Kgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_kid_is_the_thumbprint_of_the_public_jwk() -> None:
    for alg in ("EdDSA", "ES256", "RS256"):
        key = SigningKey.generate(alg)
        jwk = key.public.to_jwk()
        assert jwk["kid"] == key.kid == thumbprint(jwk)
        assert jwk["alg"] == alg and jwk["use"] == "sig"


def test_jwks_round_trips_and_holds_no_private_member() -> None:
    keys = [SigningKey.generate(alg) for alg in ("EdDSA", "ES256", "RS256")]
    document = Keyset(key.public for key in keys).to_jwks()
    assert not {"d", "p", "q", "dp", "dq", "qi"} & {m for jwk in document["keys"] for m in jwk}
    parsed = Keyset.from_json(json.dumps(document))
    assert sorted(parsed) == sorted(key.kid for key in keys)


def _jwks(*keys: SigningKey) -> dict[str, Any]:
    return Keyset(key.public for key in keys).to_jwks()


def test_from_jwks_refuses_private_members() -> None:
    key = SigningKey.generate("EdDSA")
    document = _jwks(key)
    document["keys"][0]["d"] = "AAAA"
    with pytest.raises(InvalidKeyset, match="private"):
        Keyset.from_jwks(document)


def test_from_jwks_refuses_a_kid_that_is_not_the_thumbprint() -> None:
    document = _jwks(SigningKey.generate("EdDSA"))
    document["keys"][0]["kid"] = "my-key"
    with pytest.raises(InvalidKeyset, match="thumbprint"):
        Keyset.from_jwks(document)


def test_from_jwks_refuses_duplicate_kids() -> None:
    document = _jwks(SigningKey.generate("EdDSA"))
    document["keys"].append(copy.deepcopy(document["keys"][0]))
    with pytest.raises(InvalidKeyset, match="duplicate"):
        Keyset.from_jwks(document)


def test_from_jwks_refuses_rsa_under_2048_bits() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()  # noqa: S505 - the point of the test
    with pytest.raises(InvalidKeyset, match="2048"):
        VerificationKey.from_public_key("RS256", small)
    jwk = RSAAlgorithm.to_jwk(small, as_dict=True)
    jwk.update(alg="RS256", kid=thumbprint(jwk))
    with pytest.raises(InvalidKeyset, match="2048"):
        Keyset.from_jwks({"keys": [jwk]})


@pytest.mark.parametrize("alg", ["HS256", "none", "ES512", "PS256", None])
def test_from_jwks_refuses_algorithms_outside_the_allowlist(alg: Any) -> None:
    document = _jwks(SigningKey.generate("ES256"))
    document["keys"][0]["alg"] = alg
    with pytest.raises(InvalidKeyset):
        Keyset.from_jwks(document)


def test_from_jwks_refuses_a_key_whose_type_does_not_match_its_alg() -> None:
    document = _jwks(SigningKey.generate("ES256"))
    document["keys"][0]["alg"] = "EdDSA"
    with pytest.raises(InvalidKeyset):
        Keyset.from_jwks(document)


def test_es256_refuses_a_p384_key() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(InvalidKeyset, match="P-256"):
        VerificationKey.from_public_key("ES256", p384)


@pytest.mark.parametrize("text", ["", "{", "[]", '{"keys": {}}', '{"keys": [1]}', "null"])
def test_from_json_refuses_documents_that_are_not_a_jwks(text: str) -> None:
    with pytest.raises(InvalidKeyset):
        Keyset.from_json(text)


def test_signing_key_repr_shows_no_key_material() -> None:
    key = SigningKey.generate("EdDSA")
    assert "private" not in repr(key).lower().replace("private_key", "")
    assert key.to_pem().decode() not in repr(key)


def test_pem_round_trip_keeps_the_kid() -> None:
    key = SigningKey.generate("ES256")
    assert SigningKey.from_pem("ES256", key.to_pem()).kid == key.kid
    with pytest.raises(InvalidKeyset):
        SigningKey.from_pem("ES256", b"not a pem")
