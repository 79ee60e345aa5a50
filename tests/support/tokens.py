"""Builders for tokens, including ones no honest issuer would mint."""

from __future__ import annotations

import json
from typing import Any

from wsauth.shared.core.keyset import SigningKey, b64url
from wsauth.shared.core.tokens import TOKEN_TYPE, new_jti

ISSUER = "https://issuer.test"
AUDIENCE = "wsauth"
NOW = 1_800_000_000


def make_payload(**changes: Any) -> dict[str, Any]:
    """Valid claims at ``NOW``; a change of ``None`` removes the claim."""
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 30,
        "jti": new_jti(),
    }
    payload.update(changes)
    return {name: value for name, value in payload.items() if value is not None}


def make_header(key: SigningKey, **changes: Any) -> dict[str, Any]:
    header: dict[str, Any] = {"alg": key.alg, "kid": key.kid, "typ": TOKEN_TYPE}
    header.update(changes)
    return {name: value for name, value in header.items() if value is not None}


def segment(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value, separators=(",", ":")).encode()
    return b64url(raw)


def forge(
    key: SigningKey, header: dict[str, Any] | None = None, payload: dict[str, Any] | None = None
) -> str:
    """Sign any header and payload with ``key``: a genuine signature over hostile content."""
    signing_input = f"{segment(header or make_header(key))}.{segment(payload or make_payload())}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"
