"""Micro-benchmarks of the pieces of the token path: ``python -m bench.micro``.

CPU time (``time.process_time``) per call, best of several repeats, in one
process: no server, no Redis. They isolate what an end-to-end run cannot
(the load client and Redis share the 2 cores) and back the figures in
docs/performance.md. For numbers that do not move with the machine's load,
run one under ``valgrind --tool=callgrind`` and compare instruction counts.

    ed25519   Ed25519 sign and verify: OpenSSL (cryptography) against libsodium (PyNaCl)
    tokens    wsauth.shared.core.tokens.mint and verify as the issuer and the gateway call them
    flask     the issuer's per-request Flask work: session open, security headers
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ed25519
from flask import Flask, Response, jsonify, request
from flask.sessions import SecureCookieSessionInterface

from wsauth.issuer.errors import security_headers
from wsauth.issuer.session import CookieSessionInterface
from wsauth.shared.core.keyset import Keyset, SigningKey
from wsauth.shared.core.tokens import mint, verify

SUBJECT = "c_0123456789abcdef"


def per_call_us(function: Callable[[], object], *, number: int, repeat: int) -> float:
    """Best of ``repeat`` runs of ``number`` calls, in µs of CPU per call."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(number):
            function()
        best = min(best, time.process_time() - started)
    return 1e6 * best / number


def ed25519_cases() -> dict[str, Callable[[], object]]:
    key = SigningKey.generate("EdDSA")
    assert isinstance(key.private_key, ed25519.Ed25519PrivateKey)
    private, public = key.private_key, key.private_key.public_key()
    message = b"x" * 330  # an encoded header and payload of a wsauth token
    signature = key.sign(message)
    return {
        "Ed25519 sign, OpenSSL (cryptography)": lambda: private.sign(message),
        "Ed25519 sign, libsodium (SigningKey.sign)": lambda: key.sign(message),
        "Ed25519 verify, OpenSSL (cryptography)": lambda: public.verify(signature, message),
        "Ed25519 verify, libsodium (VerificationKey.verify)": lambda: key.public.verify(
            message, signature
        ),
    }


def token_cases() -> dict[str, Callable[[], object]]:
    key = SigningKey.generate("EdDSA")
    keyset = Keyset([key.public])
    issuer, audience = "https://issuer.example", "wsauth"

    def new_token() -> object:
        return mint(key=key, issuer=issuer, audience=audience, subject=SUBJECT, now=1000, ttl=30)

    token, _claims = mint(
        key=key, issuer=issuer, audience=audience, subject=SUBJECT, now=1000, ttl=30
    )
    return {
        "mint": new_token,
        "verify": lambda: verify(
            token, keyset=keyset, issuer=issuer, audience=audience, now=1001, leeway=5, max_ttl=300
        ),
    }


def _setdefault_headers(response: Response) -> Response:
    """security_headers as it was: Headers.setdefault raises KeyError for each missing one."""
    headers = response.headers
    headers.setdefault("Cache-Control", "no-store")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    return response


def flask_cases() -> dict[str, Callable[[], object]]:
    app = Flask(__name__)
    app.secret_key = "micro-benchmark-secret-" + "0" * 32
    flask_sessions = SecureCookieSessionInterface()
    ours = CookieSessionInterface()
    context = app.test_request_context("/api/tokens", method="POST")
    context.push()  # left pushed: the process ends after the run

    def answer() -> Response:
        response = jsonify(token="x" * 410, expires_in=30, url="ws://127.0.0.1:8765/ws")
        response.headers["Cache-Control"] = "no-store"
        return response

    return {
        "open_session, Flask's interface (no cookie)": lambda: flask_sessions.open_session(
            app, request
        ),
        "open_session, CookieSessionInterface (no cookie)": lambda: ours.open_session(app, request),
        "token answer (jsonify), without security headers": answer,
        "token answer (jsonify), with security_headers": lambda: security_headers(answer()),
        "token answer (jsonify), with Headers.setdefault x4": lambda: _setdefault_headers(answer()),
    }


GROUPS = {"ed25519": ed25519_cases, "tokens": token_cases, "flask": flask_cases}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__)
    parser.add_argument("groups", nargs="*", metavar="GROUP", help=f"some of {', '.join(GROUPS)}")
    parser.add_argument("--number", type=int, default=3000, help="calls per repeat")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    unknown = set(args.groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown group {sorted(unknown)[0]!r}")
    for group in args.groups or GROUPS:
        for name, function in GROUPS[group]().items():
            function()  # warm up
            us = per_call_us(function, number=args.number, repeat=args.repeat)
            print(f"{name:55s} {us:8.1f} µs", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
