"""Mint a token for one of your users from a backend: in process, or over HTTP.

    python mint_backend.py alice [--sid SESSION]
    WSAUTH_CLIENT_ID=c_... WSAUTH_CLIENT_SECRET=... \\
        python mint_backend.py alice --http http://127.0.0.1:8000

In process it needs the WSAUTH_* settings, the key store and the Redis of
the issuer; over HTTP only an API client with the mint permission
(``wsauth clients add NAME --allow-mint``). Either way it prints
``{"token", "url", "expires_in"}``: hand them to that user's client, which
connects once with the token.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def mint_in_process(sub: str, sid: str | None) -> dict[str, Any]:
    from wsauth import Issuer, WsAuthError, load_settings

    try:
        # In a real app: one Issuer per process, made at start-up and shared.
        with Issuer(load_settings()) as issuer:
            grant = issuer.issue(sub, sid=sid, scope=f"sub:user:{sub}")
    except WsAuthError as error:
        # invalid_claims, redis_unavailable, no_signing_key, bad_config
        sys.exit(f"cannot mint: {error.code}: {error}")
    return {"token": grant.token, "url": grant.url, "expires_in": grant.expires_in}


def mint_over_http(sub: str, sid: str | None, issuer_url: str) -> dict[str, Any]:
    import requests

    body = {"sub": sub, "scope": f"sub:user:{sub}"}
    if sid is not None:
        body["sid"] = sid
    credentials = (os.environ["WSAUTH_CLIENT_ID"], os.environ["WSAUTH_CLIENT_SECRET"])
    answer = requests.post(f"{issuer_url}/api/tokens", auth=credentials, json=body, timeout=10)
    if answer.status_code != 200:
        # {"error": "<code>"}: forbidden (no mint permission), bad_request, ...
        sys.exit(f"issuer refused: {answer.status_code} {answer.json()['error']}")
    grant: dict[str, Any] = answer.json()
    return grant


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sub")
    parser.add_argument("--sid")
    parser.add_argument("--http", metavar="ISSUER_URL")
    arguments = parser.parse_args()
    if arguments.http:
        grant = mint_over_http(arguments.sub, arguments.sid, arguments.http)
    else:
        grant = mint_in_process(arguments.sub, arguments.sid)
    print(json.dumps(grant))
