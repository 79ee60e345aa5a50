"""RFC 9864 (October 2025): ``Ed25519`` is the fully specified name of ``EdDSA`` on Ed25519 keys.

Both names are accepted for Ed25519 keys, never for another key type; a key
signs with the name it was created with; new keys stay ``EdDSA`` by default
because PyJWT (the verifier in this very environment) does not know ``Ed25519``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jwt
import pytest
from click.testing import CliRunner

from wsauth.shared.cli.main import cli
from wsauth.shared.core.errors import AlgorithmNotAllowed
from wsauth.shared.core.keyset import DEFAULT_ALGORITHM, Keyset, SigningKey
from wsauth.shared.core.tokens import TOKEN_TYPE, mint, verify
from wsauth.shared.store.keystore import KeyStore

ISSUER, AUDIENCE, NOW = "https://issuer.example", "wsauth", 1_800_000_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed(key: SigningKey, alg: str) -> str:
    header = {"alg": alg, "kid": key.kid, "typ": TOKEN_TYPE}
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 30,
        "jti": "A" * 22,
    }
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{_b64(key.sign(signing_input.encode()))}"


def _verify(token: str, key: SigningKey) -> str:
    keyset = Keyset([key.public])
    claims = verify(
        token, keyset=keyset, issuer=ISSUER, audience=AUDIENCE, now=NOW, leeway=5, max_ttl=300
    )
    return claims.sub


@pytest.mark.parametrize("key_alg", ["EdDSA", "Ed25519"])
@pytest.mark.parametrize("token_alg", ["EdDSA", "Ed25519"])
def test_an_ed25519_key_accepts_tokens_under_either_name(key_alg: str, token_alg: str) -> None:
    key = SigningKey.generate(key_alg)
    assert _verify(_signed(key, token_alg), key) == "alice"


@pytest.mark.parametrize("alg", ["EdDSA", "Ed25519"])
def test_the_ed25519_names_are_refused_for_other_key_types(alg: str) -> None:
    for other in ("ES256", "RS256"):
        key = SigningKey.generate(other)
        with pytest.raises(AlgorithmNotAllowed):
            _verify(_signed(key, alg), key)


def test_a_key_created_as_ed25519_publishes_and_signs_with_that_name() -> None:
    key = SigningKey.generate("Ed25519")
    jwk = key.public.to_jwk()
    assert (jwk["alg"], jwk["kty"], jwk["crv"]) == ("Ed25519", "OKP", "Ed25519")
    assert Keyset.from_jwks({"keys": [jwk]})[key.kid].alg == "Ed25519"
    token, _ = mint(key=key, issuer=ISSUER, audience=AUDIENCE, subject="alice", now=NOW, ttl=30)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "Ed25519"
    # The thumbprint (the kid) depends on the key only, not on the name.
    same = SigningKey.from_pem("EdDSA", key.to_pem())
    assert same.kid == key.kid


def test_new_keys_are_eddsa_by_default_because_pyjwt_does_not_know_ed25519(
    tmp_path: Path,
) -> None:
    assert DEFAULT_ALGORITHM == "EdDSA"
    assert "Ed25519" not in jwt.algorithms.get_default_algorithms()  # the reason, checked
    result = CliRunner().invoke(cli, ["keys", "generate", "--keys-dir", str(tmp_path)])
    assert result.exit_code == 0 and "generated EdDSA key" in result.stdout
    result = CliRunner().invoke(
        cli, ["keys", "generate", "--alg", "Ed25519", "--keys-dir", str(tmp_path)]
    )
    assert result.exit_code == 0 and "generated Ed25519 key" in result.stdout
    assert [record.alg for record in KeyStore(tmp_path).records()] == ["EdDSA", "Ed25519"]
