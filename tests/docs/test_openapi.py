"""The issuer does what issuer/openapi.yaml says: the same routes, and answers it declares.

The spec must be valid OpenAPI 3.1; every route of the app (except static
files) must be in it with the same methods, and the other way round; and the
real app, served on loopback against a real Redis, must answer each request
below with a status the operation declares, the declared media type, a body
valid against the declared schema, and every header the spec marks required.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import yaml
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.support.issuer_server import run_issuer
from wsauth.issuer import create_app
from wsauth.issuer.clients import MINT, PUBLISH, PUSH, ClientStore
from wsauth.issuer.users import UserStore
from wsauth.shared.core.config import Settings
from wsauth.shared.state.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "issuer" / "openapi.yaml"
BASE = "urn:wsauth:openapi"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# Flask adds HEAD to every GET route and answers OPTIONS itself; neither is an operation.
IMPLICIT_METHODS = {"head", "options"}
CSRF = {"X-WSAuth-CSRF": "1"}
ALICE = ("alice", "alice-password-123")


def _absolute_refs(node: Any) -> Any:
    """The spec with every local ``$ref`` made absolute, so any part of it validates alone."""
    if isinstance(node, dict):
        return {
            key: (
                f"{BASE}{value}"
                if key == "$ref" and value.startswith("#")
                else _absolute_refs(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_absolute_refs(item) for item in node]
    return node


@functools.cache
def spec() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    return document


@functools.cache
def registry() -> Registry:
    resource = Resource(contents=_absolute_refs(spec()), specification=DRAFT202012)
    return Registry().with_resource(BASE, resource)


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a ``$ref`` to components (responses, headers)."""
    while "$ref" in node and len(node) == 1:
        target: Any = spec()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def validate(instance: Any, schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(_absolute_refs(schema), registry=registry())
    validator.validate(instance)


def spec_routes() -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in spec()["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


# --- the spec and the routes ----------------------------------------------------------


def test_the_spec_is_valid_openapi_3_1() -> None:
    assert spec()["openapi"].startswith("3.1.")
    validate_spec(spec())


def test_every_route_of_the_app_is_in_the_spec_with_the_same_methods(settings: Settings) -> None:
    app = create_app(settings)
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes |= {(path, method.lower()) for method in rule.methods or ()}
    routes = {(path, method) for path, method in routes if method not in IMPLICIT_METHODS}
    assert routes == spec_routes()


# --- the answers of the real app --------------------------------------------------------


@dataclass
class Checked:
    """Which operations the answers below exercised."""

    operations: set[tuple[str, str]] = field(default_factory=set)

    def answer(self, path: str, method: str, response: requests.Response) -> None:
        """Check one answer against the spec's declaration for its status."""
        operation = spec()["paths"][path][method]
        declared = operation["responses"]
        status = str(response.status_code)
        assert status in declared, f"{method.upper()} {path} answered {status}: {response.text}"
        answer = resolve(declared[status])
        for name, header in answer.get("headers", {}).items():
            header = resolve(header)
            if header.get("required"):
                assert name in response.headers, f"{method.upper()} {path} {status}: no {name}"
                validate(response.headers[name], header["schema"])
        content = answer.get("content")
        if content is None:
            assert status in {"303", "304"}, f"{method.upper()} {path} {status} declares no body"
        else:
            media = response.headers["Content-Type"].split(";")[0].strip()
            assert media in content, f"{method.upper()} {path} {status}: {media}"
            schema = content[media]["schema"]
            body = response.json() if media.endswith("json") else response.text
            validate(body, schema)
        self.operations.add((path, method))


# What each test below exercises; together they must cover every operation of the spec.
TOKEN_OPERATIONS = {
    ("/api/tokens", "post"),
    ("/ws-token", "post"),
    ("/login", "post"),
    ("/push-self", "post"),
    ("/api/push", "post"),
    ("/api/publish", "post"),
}
SESSION_OPERATIONS = {("/", "get"), ("/login", "get"), ("/login", "post"), ("/logout", "post")}
KEY_OPERATIONS = {
    ("/.well-known/jwks.json", "get"),
    ("/healthz", "get"),
    ("/readyz", "get"),
    ("/metrics", "get"),
}
FAIL_CLOSED_OPERATIONS = {
    ("/api/tokens", "post"),
    ("/healthz", "get"),
    ("/readyz", "get"),
    ("/.well-known/jwks.json", "get"),
}


@dataclass
class Issuer:
    url: str
    client: tuple[str, str]
    settings: Settings


def post(url: str, **options: Any) -> requests.Response:
    return requests.post(url, timeout=10, **options)


def get(url: str, **options: Any) -> requests.Response:
    return requests.get(url, timeout=10, **options)


@contextlib.contextmanager
def serve(settings: Settings) -> Iterator[Issuer]:
    UserStore.in_dir(settings.keys_dir).set_password(*ALICE)
    client = ClientStore.in_dir(settings.keys_dir).add("spec-check")
    with run_issuer(settings) as url:
        yield Issuer(url, client, settings)


@pytest.fixture
def issuer(settings: Settings) -> Iterator[Issuer]:
    with serve(settings) as served:
        yield served


@pytest.fixture
def checked() -> Iterator[Checked]:
    yield Checked()


def test_token_answers_match_the_spec(issuer: Issuer, checked: Checked) -> None:
    url = issuer.url
    checked.answer("/api/tokens", "post", post(f"{url}/api/tokens", auth=issuer.client))
    for auth in [(issuer.client[0], "wrong"), None]:
        answer = post(f"{url}/api/tokens", auth=auth)
        assert answer.status_code == 401
        checked.answer("/api/tokens", "post", answer)

    with requests.Session() as browser:
        no_header = browser.post(f"{url}/ws-token")
        assert no_header.status_code == 403
        checked.answer("/ws-token", "post", no_header)
        no_session = browser.post(f"{url}/ws-token", headers=CSRF)
        assert no_session.status_code == 401
        checked.answer("/ws-token", "post", no_session)
        credentials = {"username": ALICE[0], "password": ALICE[1]}
        checked.answer(
            "/login", "post", browser.post(f"{url}/login", json=credentials, headers=CSRF)
        )
        granted = browser.post(f"{url}/ws-token", headers=CSRF)
        assert granted.status_code == 200
        checked.answer("/ws-token", "post", granted)
        foreign = browser.post(f"{url}/ws-token", headers={**CSRF, "Origin": "https://evil.test"})
        assert foreign.status_code == 403
        checked.answer("/ws-token", "post", foreign)
        pushed = browser.post(f"{url}/push-self", json={"data": "hi"}, headers=CSRF)
        checked.answer("/push-self", "post", pushed)
        not_an_object = browser.post(f"{url}/push-self", json=["hi"], headers=CSRF)
        assert not_an_object.status_code == 400
        checked.answer("/push-self", "post", not_an_object)

    pusher = ClientStore.in_dir(issuer.settings.keys_dir).add("pusher", permissions={PUSH})
    answers = [
        post(f"{url}/api/push", auth=pusher, json={"sub": "alice", "data": {"n": 1}}),
        post(f"{url}/api/push", auth=pusher, json={"data": 1}),
        post(f"{url}/api/push", auth=pusher, data="sub=alice"),
        post(f"{url}/api/push", auth=issuer.client, json={"sub": "alice", "data": 1}),
        post(f"{url}/api/push", auth=(pusher[0], "wrong"), json={"sub": "alice", "data": 1}),
    ]
    assert [answer.status_code for answer in answers] == [200, 400, 400, 403, 401]
    for answer in answers:
        checked.answer("/api/push", "post", answer)

    minter = ClientStore.in_dir(issuer.settings.keys_dir).add("minter", permissions={MINT})
    exchanges = [
        post(f"{url}/api/tokens", auth=minter, json={"sub": "alice", "sid": "s", "scope": "sub:a"}),
        post(f"{url}/api/tokens", auth=minter, json={"sub": "alice", "admin": True}),
        post(f"{url}/api/tokens", auth=minter, data="sub=alice"),
        post(f"{url}/api/tokens", auth=issuer.client, json={"sub": "alice"}),
        post(f"{url}/api/tokens", auth=minter, json={"sub": issuer.client[0]}),
    ]
    assert [answer.status_code for answer in exchanges] == [200, 400, 400, 403, 403]
    for answer in exchanges:
        checked.answer("/api/tokens", "post", answer)

    publisher = ClientStore.in_dir(issuer.settings.keys_dir).add("pub", permissions={PUBLISH})
    published = [
        post(f"{url}/api/publish", auth=publisher, json={"channel": "room", "data": {"n": 1}}),
        post(f"{url}/api/publish", auth=publisher, json={"channel": "no room", "data": 1}),
        post(f"{url}/api/publish", auth=publisher, data="channel=room"),
        post(f"{url}/api/publish", auth=pusher, json={"channel": "room", "data": 1}),
        post(f"{url}/api/publish", auth=(publisher[0], "x"), json={"channel": "r", "data": 1}),
    ]
    assert [answer.status_code for answer in published] == [200, 400, 400, 403, 401]
    for answer in published:
        checked.answer("/api/publish", "post", answer)
    assert checked.operations == TOKEN_OPERATIONS


def test_session_answers_match_the_spec(issuer: Issuer, checked: Checked) -> None:
    url = issuer.url
    with requests.Session() as browser:
        for path in ["/", "/login"]:
            checked.answer(path, "get", browser.get(f"{url}{path}"))
        answers = [
            browser.post(f"{url}/login", json={"username": "alice"}, headers=CSRF),
            browser.post(
                f"{url}/login", json={"username": "alice", "password": "no"}, headers=CSRF
            ),
            browser.post(f"{url}/login", json={"username": "alice", "password": "no"}),
            browser.post(f"{url}/login", data={"username": "alice", "password": "no"}),
            browser.post(f"{url}/login", data="x" * 20_000, headers={"Content-Type": "text/plain"}),
            browser.post(f"{url}/logout"),
        ]
        assert [a.status_code for a in answers] == [400, 401, 403, 403, 413, 403]
        for answer in answers:
            checked.answer(
                "/logout" if answer.url.endswith("/logout") else "/login", "post", answer
            )

        page = browser.get(f"{url}/login").text
        form_token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert form_token is not None
        form = {"username": ALICE[0], "password": ALICE[1], "csrf_token": form_token.group(1)}
        logged_in = browser.post(f"{url}/login", data=form, allow_redirects=False)
        assert logged_in.status_code == 303
        checked.answer("/login", "post", logged_in)
        logged_out = browser.post(f"{url}/logout", headers=CSRF)
        assert logged_out.json() == {"status": "logged_out"}
        checked.answer("/logout", "post", logged_out)
    assert checked.operations == SESSION_OPERATIONS


def test_key_and_health_answers_match_the_spec(issuer: Issuer, checked: Checked) -> None:
    url = issuer.url
    jwks = get(f"{url}/.well-known/jwks.json")
    checked.answer("/.well-known/jwks.json", "get", jwks)
    again = get(f"{url}/.well-known/jwks.json", headers={"If-None-Match": jwks.headers["ETag"]})
    assert again.status_code == 304
    checked.answer("/.well-known/jwks.json", "get", again)
    checked.answer("/healthz", "get", get(f"{url}/healthz"))
    checked.answer("/readyz", "get", get(f"{url}/readyz"))
    checked.answer("/metrics", "get", get(f"{url}/metrics"))
    openmetrics = get(f"{url}/metrics", headers={"Accept": "application/openmetrics-text"})
    checked.answer("/metrics", "get", openmetrics)
    assert checked.operations == KEY_OPERATIONS


def test_fail_closed_answers_match_the_spec(
    make_settings: Callable[..., Settings], tmp_path: Path, checked: Checked
) -> None:
    # Nothing listens on this port: Redis is "down" from the start.
    down = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout=0.2)
    with serve(down) as issuer:
        answer = post(f"{issuer.url}/api/tokens", auth=issuer.client)
        assert answer.json() == {"error": "redis_unavailable"}
        checked.answer("/api/tokens", "post", answer)
        ready = get(f"{issuer.url}/readyz")
        assert ready.json() == {
            "status": "degraded",
            "checks": {"redis": False, "signing_key": True, "jwks": True, "timing": True},
        }
        checked.answer("/readyz", "get", ready)
        checked.answer("/healthz", "get", get(f"{issuer.url}/healthz"))

    no_keys = make_settings(keys_dir=str(tmp_path / "empty-store"))
    with serve(no_keys) as issuer:
        answer = post(f"{issuer.url}/api/tokens", auth=issuer.client)
        assert answer.json() == {"error": "no_signing_key"}
        checked.answer("/api/tokens", "post", answer)
        checked.answer("/.well-known/jwks.json", "get", get(f"{issuer.url}/.well-known/jwks.json"))
    assert checked.operations == FAIL_CLOSED_OPERATIONS


def test_the_answers_checked_here_cover_every_operation_of_the_spec() -> None:
    covered = TOKEN_OPERATIONS | SESSION_OPERATIONS | KEY_OPERATIONS | FAIL_CLOSED_OPERATIONS
    assert spec_routes() <= covered, f"no answer checked for {sorted(spec_routes() - covered)}"
