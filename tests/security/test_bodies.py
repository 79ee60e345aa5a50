"""No body of any shape gives a 500: every endpoint of the issuer, a real server on loopback.

Each hostile body is sent to each endpoint that reads a body (and to the ones
that do not, which must ignore it): the answer is a 4xx with a JSON reason
code, exactly one refusal line (``reason=<code>``) and no traceback, and no
token is minted (nothing new in Redis). ``Python's json`` raised
``RecursionError`` on deep nesting, which Flask's ``get_json(silent=True)``
does not catch, and a lone surrogate (``"\\ud800"``) passed the parser and
failed when written out as UTF-8: both were 500s.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator

import pytest
import redis
import requests

from tests.conftest import TEST_SECRET
from tests.security.support import ServiceLog
from tests.support.issuer_server import run_issuer
from wsauth.issuer.clients import MINT, PUSH, ClientStore
from wsauth.issuer.users import UserStore
from wsauth.shared.core.config import Settings, load_settings
from wsauth.shared.state.redis_server import EmbeddedRedis
from wsauth.shared.store.keystore import KeyStore

ALICE = ("alice", "alice-password-123")
CSRF = {"X-WSAuth-CSRF": "1"}
JSON = "application/json"

DEEP = b"[" * 3000 + b"]" * 3000
DEEP_OBJECT = b'{"a":' * 2000 + b"1" + b"}" * 2000

# name: (body, content type, code for the endpoints that read a JSON object)
BODIES: dict[str, tuple[bytes, str, str]] = {
    "deeply-nested-array": (DEEP, JSON, "bad_request"),
    "deeply-nested-object": (DEEP_OBJECT, JSON, "bad_request"),
    "deep-data-member": (b'{"sub":"alice","data":' + DEEP + b"}", JSON, "bad_request"),
    "deep-username": (b'{"username":' + DEEP + b',"password":"x"}', JSON, "bad_request"),
    "33-levels": (b'{"sub":"alice","data":' + b"[" * 32 + b"]" * 32 + b"}", JSON, "bad_request"),
    "lone-surrogate": (
        b'{"sub":"alice","data":"\\ud800","username":"\\ud800","password":"\\udfff"}',
        JSON,
        "bad_request",
    ),
    "lone-surrogate-key": (b'{"\\ud800":1,"sub":"alice","data":1}', JSON, "bad_request"),
    "not-an-object-array": (b"[1, 2]", JSON, "bad_request"),
    "not-an-object-string": (b'"data"', JSON, "bad_request"),
    "not-an-object-null": (b"null", JSON, "bad_request"),
    "not-an-object-number": (b"1e999999", JSON, "bad_request"),
    "nan": (b'{"sub":"alice","data":NaN}', JSON, "bad_request"),
    "infinity": (b'{"sub":"alice","data":-Infinity}', JSON, "bad_request"),
    "5000-digit-integer": (b'{"sub":"alice","data":' + b"9" * 5000 + b"}", JSON, "bad_request"),
    "bad-utf8": (b'{"sub":"alice","data":"\xff\xfe"}', JSON, "bad_request"),
    "utf16": ('{"sub":"alice","data":1}'.encode("utf-16"), JSON, "bad_request"),
    "truncated": (b'{"sub":"alice","data":', JSON, "bad_request"),
    "empty": (b"", JSON, "bad_request"),
    "binary": (b"\x00\x01\x02\xff", JSON, "bad_request"),
    "wrong-types": (b'{"sub":1,"username":1,"password":[1]}', JSON, "bad_request"),
    "oversized": (
        b'{"sub":"alice","data":"' + b"x" * 70_000 + b'"}',
        JSON,
        "request_entity_too_large",
    ),
    "form-body": (
        b"sub=alice&data=1&username=alice",
        "application/x-www-form-urlencoded",
        "bad_request",
    ),
    "multipart-without-boundary": (b"abc", "multipart/form-data", "bad_request"),
    "text": (b"hello", "text/plain", "bad_request"),
}

# endpoint: the principal it needs (so the request gets as far as reading the body)
JSON_ENDPOINTS = {
    "/push-self": "session",
    "/api/push": "client",
    "/login": "none",
    "/api/tokens": "minter",  # a token exchange: {"sub", "sid"?, "scope"?}
}
# (/logout without a session: logging the module's session out would change other tests)
OTHER_POSTS = {"/ws-token": "session", "/api/tokens": "client", "/logout": "none"}


@pytest.fixture(scope="module")
def issuer(
    tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis
) -> Iterator[tuple[str, Settings]]:
    """One issuer for the module (tests only send requests to it), with alice."""
    store = KeyStore(tmp_path_factory.mktemp("keys"))
    store.generate("EdDSA", now=int(time.time()) - 3600)
    settings = load_settings(
        env={},
        overrides={
            "redis_url": redis_server.url,
            "keys_dir": str(store.dir),
            "secret_key": TEST_SECRET,
        },
    )
    UserStore.in_dir(settings.keys_dir).set_password(*ALICE)
    with run_issuer(settings) as url:
        yield url, settings


@pytest.fixture(scope="module")
def principals(issuer: tuple[str, Settings]) -> dict[str, dict[str, str]]:
    """Headers of a logged-in session (its cookie) and of an API client with push."""
    url, settings = issuer
    login = {"username": ALICE[0], "password": ALICE[1]}
    answer = requests.post(f"{url}/login", json=login, headers=CSRF, timeout=5)
    assert answer.ok
    cookie = "; ".join(f"{name}={value}" for name, value in answer.cookies.items())
    client_id, secret = ClientStore.in_dir(settings.keys_dir).add(
        "svc", permissions=frozenset({PUSH})
    )
    credentials = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    minter_id, minter_secret = ClientStore.in_dir(settings.keys_dir).add(
        "backend", permissions=frozenset({MINT})
    )
    minter = base64.b64encode(f"{minter_id}:{minter_secret}".encode()).decode()
    return {
        "session": {**CSRF, "Cookie": cookie},
        "client": {**CSRF, "Authorization": f"Basic {credentials}"},
        "minter": {**CSRF, "Authorization": f"Basic {minter}"},
        "none": dict(CSRF),
    }


@contextlib.contextmanager
def _one_request(service_log: ServiceLog, redis_client: redis.Redis) -> Iterator[None]:
    service_log.caplog.clear()
    before = set(redis_client.scan_iter("wsauth:jti:*"))
    yield
    assert set(redis_client.scan_iter("wsauth:jti:*")) == before, "a token was minted"


# A non-JSON login is the HTML form, answered with the login page: not one of these.
JSON_CASES = [
    (endpoint, case)
    for endpoint in sorted(JSON_ENDPOINTS)
    for case in sorted(BODIES)
    if endpoint != "/login" or BODIES[case][1] == JSON
]


@pytest.mark.parametrize(("endpoint", "case"), JSON_CASES)
def test_a_hostile_body_is_a_4xx_with_a_reason_never_a_500(
    issuer: tuple[str, Settings],
    principals: dict[str, dict[str, str]],
    redis_client: redis.Redis,
    service_log: ServiceLog,
    endpoint: str,
    case: str,
) -> None:
    url, _settings = issuer
    body, content_type, code = BODIES[case]
    if endpoint == "/api/push" and case == "oversized":
        body = body.replace(b"x" * 70_000, b"x" * 80_000)  # its cap is the event size
    headers = principals[JSON_ENDPOINTS[endpoint]]
    with _one_request(service_log, redis_client):
        answer = requests.post(
            f"{url}{endpoint}",
            data=body,
            headers={**headers, "Content-Type": content_type},
            timeout=10,
        )
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:200])
    assert answer.json() == {"error": code}
    service_log.expect_refusal(code, logger="wsauth.issuer")


@pytest.mark.parametrize("case", sorted(BODIES))
@pytest.mark.parametrize("endpoint", sorted(OTHER_POSTS))
def test_an_endpoint_that_takes_no_body_is_never_a_500_whatever_the_body(
    issuer: tuple[str, Settings],
    principals: dict[str, dict[str, str]],
    redis_client: redis.Redis,
    service_log: ServiceLog,
    endpoint: str,
    case: str,
) -> None:
    url, _settings = issuer
    body, content_type, _code = BODIES[case]
    headers = principals[OTHER_POSTS[endpoint]]
    service_log.caplog.clear()
    answer = requests.post(
        f"{url}{endpoint}",
        data=body,
        headers={**headers, "Content-Type": content_type},
        timeout=10,
    )
    assert answer.status_code < 500, (answer.status_code, answer.text[:200])
    if answer.status_code >= 400:
        assert set(answer.json()) == {"error"}
        service_log.expect_refusal(answer.json()["error"], logger="wsauth.issuer")
    service_log.expect_clean()


def test_a_login_form_with_undecodable_bytes_is_refused_as_a_wrong_password(
    issuer: tuple[str, Settings], service_log: ServiceLog
) -> None:
    url, _settings = issuer
    answer = requests.post(
        f"{url}/login",
        data=b"username=%ff%fe%00&password=%d8%00&csrf_token=%ff",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert answer.status_code in (401, 403)
    service_log.expect_clean()


@pytest.mark.parametrize("case", ["deeply-nested-array", "lone-surrogate", "nan"])
def test_a_hostile_body_to_a_page_or_a_probe_is_ignored(
    issuer: tuple[str, Settings], service_log: ServiceLog, case: str
) -> None:
    url, _settings = issuer
    body, content_type, _code = BODIES[case]
    for path in ("/", "/healthz", "/readyz", "/.well-known/jwks.json", "/login"):
        answer = requests.get(
            f"{url}{path}", data=body, headers={"Content-Type": content_type}, timeout=5
        )
        assert answer.status_code < 500 or path == "/readyz", (path, answer.status_code)
    service_log.expect_clean()
