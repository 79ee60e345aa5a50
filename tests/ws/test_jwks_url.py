"""ws/jwks_url.py: a gateway that takes its keys from a JWKS URL.

Against real servers on loopback: the issuer app (``run_issuer``) or a tiny
JWKS server started here (:class:`JwksServer`, which counts the fetches on
the server side and can answer anything, including broken keysets), a real
gateway (``run_gateway``) and the real Redis.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from tests.support.gateway_server import GatewayHandle, run_gateway
from tests.support.issuer_server import run_issuer
from tests.support.polling import wait_until as poll
from tests.ws.conftest import Tokens, refusal
from wsauth.shared.core.config import Settings
from wsauth.shared.core.errors import ConfigError
from wsauth.shared.core.keyset import Keyset, SigningKey
from wsauth.shared.store.keystore import KeyStore
from wsauth.ws.app import make_app
from wsauth.ws.jwks_url import MAX_SIZE, UrlKeysetSource

# --- a JWKS server that counts fetches and answers what the test says -------------


@dataclass
class Answer:
    status: int = 200
    body: bytes = b'{"keys": []}'
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # hold the request until the server stops


class JwksServer:
    """``GET /jwks.json`` on 127.0.0.1 in a thread; ``fetches`` counts the requests."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.fetches = 0
        self._count_lock = threading.Lock()
        self._release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._count_lock:
                    server.fetches += 1
                answer = server.answer
                if answer.hang:
                    server._release.wait(timeout=30)
                    return
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, name="test-jwks")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_port}/jwks.json"

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def release(self) -> None:
        """Stop hanging: a held request ends without an answer, the next ones are served."""
        self.answer.hang = False
        self._release.set()

    def __exit__(self, *exc_info: object) -> None:
        self._release.set()
        self._http.shutdown()
        self._thread.join(timeout=10)
        self._http.server_close()


@pytest.fixture
def jwks_server(key_store: KeyStore) -> Iterator[JwksServer]:
    """Serves the test key store's JWKS with ``max-age=3600`` (no refetch on its own)."""
    answer = Answer(body=key_store.jwks_path.read_bytes(), headers=_cache(3600))
    with JwksServer(answer) as server:
        yield server


def _cache(max_age: int) -> dict[str, str]:
    return {"Cache-Control": f"public, max-age={max_age}"}


# --- helpers -------------------------------------------------------------------------


def readyz(gateway: GatewayHandle) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{gateway.http_url}/readyz", timeout=5) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def keyset_status(gateway: GatewayHandle) -> dict[str, Any]:
    return dict(readyz(gateway)[1]["keyset"])


def wait_until_loaded(gateway: GatewayHandle) -> None:
    poll(lambda: readyz(gateway)[0] == 200, what="the gateway's first keyset")


def welcomed(gateway: GatewayHandle, token: str) -> bool:
    protocols = [Subprotocol("wsauth"), Subprotocol(f"wsauth.bearer.{token}")]
    with connect(gateway.ws_url, subprotocols=protocols) as ws:
        return bool(json.loads(ws.recv(timeout=5))["type"] == "welcome")


def source(url: str, settings: Settings, **options: Any) -> UrlKeysetSource:
    options.setdefault("min_interval", 0.2)
    options.setdefault("default_max_age", 3600.0)
    return UrlKeysetSource(url, issuer=settings.issuer, **options)


def keyset_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "wsauth.gateway"
        and r.levelno >= logging.ERROR
        and r.getMessage().startswith("keyset not loaded")
    ]


# --- against the real issuer -----------------------------------------------------------


def test_gateway_with_the_issuers_jwks_url_accepts_the_issuers_tokens(
    make_settings: Callable[..., Settings], settings: Settings, tokens: Tokens
) -> None:
    with run_issuer(settings) as issuer_url:
        url = f"{issuer_url}/.well-known/jwks.json"
        with run_gateway(make_settings(jwks_url=url)) as gateway:
            wait_until_loaded(gateway)
            status = keyset_status(gateway)
            assert status["url"] == url
            assert status["issuer"] == settings.issuer
            assert status["kids"] == [tokens.key.kid]
            assert status["last_error"] is None
            # The issuer's max-age (WSAUTH_JWKS_CACHE, 60) is honoured.
            assert status["next_fetch_at"] - status["fetched_at"] == pytest.approx(60)
            token, _ = tokens.issue()
            assert welcomed(gateway, token)


def test_gateway_follows_a_key_published_by_the_issuer_without_a_restart(
    make_settings: Callable[..., Settings], key_store: KeyStore, tokens: Tokens
) -> None:
    settings = make_settings(jwks_cache=1)
    with run_issuer(settings) as issuer_url:
        url = f"{issuer_url}/.well-known/jwks.json"
        with run_gateway(make_settings(jwks_url=url, jwks_cache=1)) as gateway:
            wait_until_loaded(gateway)
            record = key_store.generate("ES256", now=int(time.time()))
            poll(lambda: record.kid in keyset_status(gateway)["kids"], what="the new key")


# --- freshness: Cache-Control max-age ------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "fresh_for"),
    [
        ({"Cache-Control": "public, max-age=30"}, 30),
        ({"Cache-Control": "max-age=30", "Age": "10"}, 20),
        ({}, 45),  # no Cache-Control: WSAUTH_JWKS_CACHE
        ({"Cache-Control": "max-age=99999"}, 45),  # never longer than WSAUTH_JWKS_CACHE
        ({"Cache-Control": "no-store"}, 1),  # never more than once a second
        ({"Cache-Control": "max-age=0"}, 1),
    ],
    ids=["max-age", "max-age-less-age", "absent", "capped", "no-store", "zero"],
)
def test_url_source_keeps_a_copy_for_its_max_age_within_the_cache_interval(
    jwks_server: JwksServer, settings: Settings, headers: dict[str, str], fresh_for: float
) -> None:
    jwks_server.answer.headers = headers

    async def fetch_once() -> dict[str, Any]:
        keys = source(jwks_server.url, settings, min_interval=5, default_max_age=45)
        await keys.fetch()
        return keys.status()

    status = asyncio.run(fetch_once())
    assert status["keys"] == 1
    assert status["next_fetch_at"] - status["fetched_at"] == pytest.approx(fresh_for)


def test_gateway_fetches_the_jwks_again_when_its_max_age_expires(
    jwks_server: JwksServer, make_settings: Callable[..., Settings]
) -> None:
    jwks_server.answer.headers = _cache(1)
    with run_gateway(make_settings(jwks_url=jwks_server.url, jwks_cache=60)) as gateway:
        wait_until_loaded(gateway)
        started, first = time.monotonic(), jwks_server.fetches
        poll(lambda: jwks_server.fetches >= first + 2, timeout=10, what="two refetches")
        elapsed = time.monotonic() - started
        # Once per second of max-age: not sooner, and not the 60 s of WSAUTH_JWKS_CACHE.
        assert jwks_server.fetches - first <= 2 + elapsed


# --- unknown kids: at most one fetch per interval ----------------------------------------


def test_a_flood_of_unknown_kids_costs_at_most_one_fetch_per_interval(
    jwks_server: JwksServer, settings: Settings, tokens: Tokens
) -> None:
    interval = 1.0
    keys = source(jwks_server.url, settings, min_interval=interval)
    with run_gateway(settings, keyset_source=keys) as gateway:
        wait_until_loaded(gateway)
        assert jwks_server.fetches == 1
        started = time.monotonic()
        for number in range(150):
            token, claims = tokens.craft(header={"kid": f"random-kid-{number}"})
            answer = refusal(gateway.ws_url, subprotocols=["wsauth", f"wsauth.bearer.{token}"])
            assert (answer.status, answer.error) == (401, "unknown_kid")
            assert tokens.recorded(claims)
        elapsed = time.monotonic() - started
        poll(lambda: jwks_server.fetches >= 2, what="the refresh the unknown kids asked for")
        poll(lambda: keyset_status(gateway)["fetches"] == jwks_server.fetches, what="status")
        extra = jwks_server.fetches - 1
        assert 1 <= extra <= 2 + elapsed / interval, (extra, elapsed)
        assert extra < 150 / 10


def test_an_unknown_kid_makes_the_gateway_pick_up_a_newly_published_key(
    jwks_server: JwksServer, settings: Settings, tokens: Tokens
) -> None:
    keys = source(jwks_server.url, settings, min_interval=0.3)
    with run_gateway(settings, keyset_source=keys) as gateway:
        wait_until_loaded(gateway)
        new_key = SigningKey.generate("EdDSA")
        jwks_server.answer.body = _jwks(tokens.key, new_key)
        token, _ = tokens.issue(key=new_key)
        answer = refusal(gateway.ws_url, subprotocols=["wsauth", f"wsauth.bearer.{token}"])
        assert (answer.status, answer.error) == (401, "unknown_kid")
        poll(lambda: new_key.kid in keyset_status(gateway)["kids"], what="the new key")
        token, _ = tokens.issue(key=new_key)
        assert welcomed(gateway, token)


def test_the_handshake_never_waits_for_a_fetch(
    jwks_server: JwksServer, settings: Settings, tokens: Tokens
) -> None:
    keys = source(jwks_server.url, settings, min_interval=0.1, timeout=3.0)
    with run_gateway(settings, keyset_source=keys) as gateway:
        wait_until_loaded(gateway)
        jwks_server.answer.hang = True
        token, _ = tokens.craft(header={"kid": "unknown"})
        started = time.monotonic()
        answer = refusal(gateway.ws_url, subprotocols=["wsauth", f"wsauth.bearer.{token}"])
        assert answer.error == "unknown_kid"
        poll(lambda: jwks_server.fetches >= 2, what="the hanging fetch")
        token, _ = tokens.issue()
        assert welcomed(gateway, token)
        assert time.monotonic() - started < 3.0  # the fetch is still hanging
        poll(lambda: keyset_status(gateway)["last_error"] is not None, what="the timeout")
        assert keyset_status(gateway)["last_error"] == "no answer within 3.0s"
        assert keyset_status(gateway)["kids"] == [tokens.key.kid]
        jwks_server.release()
        poll(lambda: keyset_status(gateway)["last_error"] is None, what="the recovery")


# --- a broken JWKS keeps the last good keyset ---------------------------------------------


def _jwks(*keys: SigningKey) -> bytes:
    return json.dumps(Keyset(key.public for key in keys).to_jwks()).encode()


def _broken(kind: str, key: SigningKey) -> Answer:
    jwk: dict[str, Any] = key.public.to_jwk()
    if kind == "private member":
        jwk["d"] = "AAAA"
        return Answer(body=json.dumps({"keys": [jwk]}).encode())
    if kind == "kid not the thumbprint":
        jwk["kid"] = "not-the-thumbprint"
        return Answer(body=json.dumps({"keys": [jwk]}).encode())
    if kind == "short rsa":
        small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()  # noqa: S505
        rsa_jwk = RSAAlgorithm.to_jwk(small, as_dict=True)
        rsa_jwk.update(alg="RS256", use="sig", kid="x")
        return Answer(body=json.dumps({"keys": [rsa_jwk]}).encode())
    if kind == "duplicate kid":
        return Answer(body=json.dumps({"keys": [jwk, jwk]}).encode())
    if kind == "not json":
        return Answer(body=b"{not json")
    if kind == "http 500":
        return Answer(status=500, body=b"oops")
    if kind == "over the size cap":
        return Answer(body=b'{"keys": [' + b" " * MAX_SIZE + b"]}")
    raise AssertionError(kind)


BROKEN = [
    ("private member", "private members"),
    ("kid not the thumbprint", "thumbprint"),
    ("short rsa", "1024 bits"),
    ("duplicate kid", "duplicate kid"),
    ("not json", "not valid JSON"),
    ("http 500", "HTTP 500"),
    ("over the size cap", f"over {MAX_SIZE} bytes"),
]


@pytest.mark.parametrize(("kind", "error"), BROKEN, ids=[kind for kind, _ in BROKEN])
def test_a_broken_jwks_at_the_url_keeps_the_last_good_keyset_and_readyz_reports_it(
    jwks_server: JwksServer,
    settings: Settings,
    tokens: Tokens,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    error: str,
) -> None:
    keys = source(jwks_server.url, settings, min_interval=0.1, default_max_age=0.2)
    with run_gateway(settings, keyset_source=keys) as gateway:
        wait_until_loaded(gateway)
        good = jwks_server.answer
        caplog.set_level(logging.INFO, logger="wsauth.gateway")
        jwks_server.answer = _broken(kind, tokens.key)
        poll(lambda: keyset_status(gateway)["last_error"] is not None, what="the error")
        failed_at = jwks_server.fetches
        # Fetched again and again (with back-off): still the one error line.
        poll(lambda: jwks_server.fetches >= failed_at + 2, what="two more failed fetches")

        status, document = readyz(gateway)
        assert status == 200
        assert document["keyset"]["kids"] == [tokens.key.kid]
        assert error in document["keyset"]["last_error"]
        token, _ = tokens.issue()
        assert welcomed(gateway, token)
        errors = keyset_errors(caplog)
        assert len(errors) == 1
        assert "keeping the last good one (1 keys)" in errors[0]

        jwks_server.answer = good
        poll(lambda: keyset_status(gateway)["last_error"] is None, what="the recovery")


def test_a_jwks_with_private_members_is_never_loaded(
    jwks_server: JwksServer, make_settings: Callable[..., Settings], tokens: Tokens
) -> None:
    jwks_server.answer = _broken("private member", tokens.key)
    with run_gateway(make_settings(jwks_url=jwks_server.url)) as gateway:
        poll(lambda: keyset_status(gateway)["last_error"] is not None, what="the refusal")
        status, document = readyz(gateway)
        assert status == 503
        assert document["status"] == "degraded"
        assert document["keyset"]["keys"] == 0
        assert "private members ['d']" in document["keyset"]["last_error"]
        token, claims = tokens.issue()
        answer = refusal(gateway.ws_url, subprotocols=["wsauth", f"wsauth.bearer.{token}"])
        assert (answer.status, answer.error) == (401, "unknown_kid")
        assert tokens.recorded(claims)


def test_an_unreachable_jwks_url_is_reported_and_retried(
    make_settings: Callable[..., Settings],
) -> None:
    with JwksServer(Answer()) as stopped:
        url = stopped.url
    with run_gateway(make_settings(jwks_url=url, jwks_cache=1)) as gateway:
        poll(lambda: keyset_status(gateway)["last_error"] is not None, what="the error")
        assert keyset_status(gateway)["last_error"].startswith("cannot fetch: ")
        poll(lambda: keyset_status(gateway)["fetches"] >= 3, what="the retries")
        assert readyz(gateway)[0] == 503


# --- trust per issuer ---------------------------------------------------------------------


def test_keys_from_the_url_admit_no_token_of_another_issuer(
    jwks_server: JwksServer, make_settings: Callable[..., Settings], tokens: Tokens
) -> None:
    with run_gateway(make_settings(jwks_url=jwks_server.url)) as gateway:
        wait_until_loaded(gateway)
        token, claims = tokens.issue(issuer="https://another-issuer.example")
        answer = refusal(gateway.ws_url, subprotocols=["wsauth", f"wsauth.bearer.{token}"])
        assert (answer.status, answer.error) == (401, "wrong_issuer")
        assert tokens.recorded(claims)


def test_make_app_refuses_a_url_source_built_for_another_issuer(settings: Settings) -> None:
    other = UrlKeysetSource("http://127.0.0.1:9/jwks.json", issuer="https://elsewhere.example")
    with pytest.raises(ConfigError, match="WSAUTH_ISSUER"):
        make_app(settings, keyset_source=other)


def test_url_source_reports_its_url_without_credentials(settings: Settings) -> None:
    keys = UrlKeysetSource(
        "https://user:pw@keys.example:8443/jwks.json?token=x", issuer=settings.issuer
    )
    assert keys.status()["url"] == "https://keys.example:8443/jwks.json"
    assert "pw" not in json.dumps(keys.status())


def test_url_source_asks_with_its_etag_and_keeps_its_keyset_on_304(
    settings: Settings, tokens: Tokens
) -> None:
    async def fetch_twice(url: str) -> tuple[bool, bool, dict[str, Any]]:
        keys = source(url, settings)
        return await keys.fetch(), await keys.fetch(), keys.status()

    with run_issuer(settings) as issuer_url:
        first, second, status = asyncio.run(fetch_twice(f"{issuer_url}/.well-known/jwks.json"))
    assert (first, second) == (True, False)  # the second answer was a 304
    assert status["kids"] == [tokens.key.kid]
    assert status["last_error"] is None
    assert status["fetches"] == 2


def test_a_forced_refresh_fetches_at_once_whatever_the_max_age(
    jwks_server: JwksServer, settings: Settings, tokens: Tokens
) -> None:
    keys = source(jwks_server.url, settings, min_interval=60)
    with run_gateway(settings, keyset_source=keys) as gateway:
        wait_until_loaded(gateway)
        new_key = SigningKey.generate("EdDSA")
        jwks_server.answer.body = _jwks(new_key)

        async def force() -> bool:
            return keys.refresh(time.time(), force=True)

        assert gateway.call(force) is True
        poll(lambda: keyset_status(gateway)["kids"] == [new_key.kid], what="the forced fetch")
        assert jwks_server.fetches == 2
