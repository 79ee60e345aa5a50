"""/static/wsauth.js alone, in Chromium, against a scripted token endpoint and gateway.

The close-code policy is a contract (docs/reference, close codes); each row
of it is checked here without servers, so the timing is the client's own:
``random`` is fixed at 0.5, so a backoff of ceiling ``c`` is ``c / 2`` ms.
The live-server tests are in test_demo_page.py; resume tickets and recovery against
real gateway processes (one killed mid-stream) in test_resume_end_to_end.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Route

import wsauth.issuer as issuer

ORIGIN = "http://wsauth.test"
MODULE = Path(issuer.__file__).parent / "static" / "wsauth.js"
FAKE_GATEWAY = Path(__file__).parent / "fake_gateway.js"
STOPPED = '(status) => status.state === "stopped"'


@pytest.fixture
def page(new_page: Callable[[], Page]) -> Iterator[Page]:
    """A blank page on a made-up origin that serves the module and the fake gateway."""
    files = {
        "/": ("text/html", "<!doctype html><title>wsauth.js</title>"),
        "/static/wsauth.js": ("text/javascript", MODULE.read_text()),
        "/fake_gateway.js": ("text/javascript", FAKE_GATEWAY.read_text()),
    }

    def serve(route: Route) -> None:
        path = route.request.url.removeprefix(ORIGIN)
        content_type, body = files[path]
        route.fulfill(status=200, content_type=content_type, body=body)

    opened = new_page()
    opened.route(f"{ORIGIN}/**", serve)
    opened.goto(f"{ORIGIN}/")
    yield opened


def run(page: Page, plans: list[dict[str, Any]], until: str, **options: Any) -> dict[str, Any]:
    """Run the client against ``plans`` until the JS predicate ``until(status, record)`` holds."""
    result: dict[str, Any] = page.evaluate(
        f"""async ([plans, options]) => {{
            const {{ run }} = await import("/fake_gateway.js");
            return run(plans, {{ ...options, until: {until} }});
        }}""",
        [plans, options],
    )
    return result


def states(record: dict[str, Any]) -> list[str]:
    return [status["state"] for status in record["statuses"]]


def test_the_client_fetches_each_token_same_origin_with_the_csrf_header(page: Page) -> None:
    record = run(page, [{}], '(status) => status.state === "open"')
    assert record["fetches"] == [
        {"url": "/ws-token", "method": "POST", "credentials": "same-origin", "csrf": "1"}
    ]
    [(protocol, bearer)] = record["offered"]
    assert (protocol, bearer.startswith("wsauth.bearer.header.payload")) == ("wsauth", True)
    assert record["messages"] == [{"type": "welcome", "sub": "alice"}]
    assert states(record) == ["connecting", "open"]


@pytest.mark.parametrize(("code", "name"), [(1000, "normal"), (4001, "revoked")])
def test_a_terminal_close_stops_the_client_without_another_token_fetch(
    page: Page, code: int, name: str
) -> None:
    record = run(page, [{"close": code, "reason": name}], STOPPED, afterStop=150)
    assert states(record) == ["connecting", "open", "stopped"]
    assert record["statuses"][-1]["code"] == code
    assert record["statuses"][-1]["reason"] == name
    assert record["closes"][0]["willRetry"] is False
    assert len(record["fetches"]) == 1
    assert record["after"] == []  # nothing happened while the test kept watching


@pytest.mark.parametrize("status", [401, 403])
def test_a_token_endpoint_refusal_means_logged_out_and_stops_the_client(
    page: Page, status: int
) -> None:
    record = run(page, [{"token": status}], STOPPED, afterStop=150)
    assert states(record) == ["connecting", "stopped"]
    assert record["statuses"][-1]["httpStatus"] == status
    assert record["offered"] == []  # no WebSocket was opened
    assert len(record["fetches"]) == 1
    assert record["after"] == []


def test_a_reauthenticate_close_reconnects_at_once_with_a_fresh_token(page: Page) -> None:
    record = run(
        page,
        [{"close": 4002, "reason": "reauthenticate", "after": 600}, {}],
        '(status, record) => status.state === "open" && record.fetches.length === 2',
    )
    assert states(record) == ["connecting", "open", "closed", "connecting", "open"]
    closed = record["statuses"][2]
    assert (closed["code"], closed["delay"]) == (4002, 0)
    first, second = (offered[1] for offered in record["offered"])
    assert first != second


def test_a_reauthenticate_close_of_a_brand_new_connection_backs_off_instead(page: Page) -> None:
    record = run(page, [{"close": 4002, "after": 0}, {}], '(status) => status.state === "closed"')
    # A gateway whose max age is far too low cannot make clients hammer the issuer.
    assert record["statuses"][-1]["delay"] == 5


@pytest.mark.parametrize("code", [1001, 1006, 1009, 1011, 4003, 4999])
def test_a_retryable_close_reconnects_after_a_backoff_with_a_fresh_token(
    page: Page, code: int
) -> None:
    record = run(
        page,
        [{"close": code}, {}],
        '(status, record) => status.state === "open" && record.fetches.length === 2',
    )
    closed = [status for status in record["statuses"] if status["state"] == "closed"]
    assert [(status["code"], status["delay"]) for status in closed] == [(code, 5)]
    assert record["closes"][0]["willRetry"] is True
    assert len({offered[1] for offered in record["offered"]}) == 2


def test_the_backoff_doubles_with_full_jitter_up_to_the_cap(page: Page) -> None:
    record = run(
        page,
        [{"refuse": True}],
        '(status, record) => record.fetches.length === 6 && status.state === "closed"',
    )
    delays = [status["delay"] for status in record["statuses"] if status["state"] == "closed"]
    # ceilings 10, 20, 40, 80, 80 (capped), 80; random() = 0.5 picks the middle.
    assert delays == [5, 10, 20, 40, 40, 40]
    jittered = run(
        page,
        [{"refuse": True}],
        '(status, record) => record.fetches.length === 6 && status.state === "closed"',
        clientOptions={"random": None},  # the default, Math.random
    )
    delays = [status["delay"] for status in jittered["statuses"] if status["state"] == "closed"]
    assert all(
        0 <= delay < ceiling
        for delay, ceiling in zip(delays, [10, 20, 40, 80, 80, 80], strict=True)
    )


def test_the_backoff_resets_after_a_stable_connection(page: Page) -> None:
    record = run(
        page,
        [{"refuse": True}, {"refuse": True}, {"close": 1001, "after": 120}, {}],
        '(status, record) => record.fetches.length === 4 && status.state === "open"',
        clientOptions={"stableAfter": 100},
    )
    delays = [status["delay"] for status in record["statuses"] if status["state"] == "closed"]
    assert delays == [5, 10, 5]  # the third close came after a connection of 120 ms >= 100


def test_an_unavailable_token_endpoint_is_retried_with_backoff(page: Page) -> None:
    record = run(page, [{"token": 503}, {}], '(status) => status.state === "open"')
    assert states(record) == ["connecting", "closed", "connecting", "open"]
    assert record["statuses"][1]["reason"] == "redis_unavailable"
    assert record["statuses"][1]["httpStatus"] == 503


def test_stop_during_a_backoff_cancels_the_pending_reconnect(page: Page) -> None:
    record = page.evaluate(
        """async () => {
            const { WsAuthClient } = await import("/static/wsauth.js");
            const fetches = [];
            const statuses = [];
            const client = new WsAuthClient({
              baseDelay: 200,
              random: () => 0.5,
              fetch: async (url) => {
                fetches.push(url);
                return new Response('{"error":"redis_unavailable"}', { status: 503 });
              },
              onStatus: (status) => {
                statuses.push(status.state);
                if (status.state === "closed") client.stop();
              },
            });
            client.start();
            // The cancelled retry was due after 100 ms: watch for three times that.
            await new Promise((resolve) => setTimeout(resolve, 300));
            return { fetches, statuses };
        }"""
    )
    assert record == {"fetches": ["/ws-token"], "statuses": ["connecting", "closed", "stopped"]}


def test_a_page_callback_that_throws_does_not_stall_the_reconnect(page: Page) -> None:
    with page.expect_event("pageerror") as reported:
        record = page.evaluate(
            """async () => {
                const { WsAuthClient } = await import("/static/wsauth.js");
                let fetches = 0;
                return await new Promise((resolve) => {
                  const client = new WsAuthClient({
                    baseDelay: 10,
                    fetch: async () => {
                      fetches += 1;
                      const status = fetches === 1 ? 503 : 401;
                      return new Response("{}", { status });
                    },
                    onStatus: (status) => {
                      if (status.state === "closed") throw new Error("page bug");
                      if (status.state === "stopped") resolve({ fetches, state: client.state });
                    },
                  });
                  client.start();
                });
            }"""
        )
    assert record == {"fetches": 2, "state": "stopped"}
    assert "page bug" in reported.value.message  # reported to the page, not swallowed


TICKET = "T" * 43
WELCOME = {"type": "welcome", "sub": "alice", "resume": TICKET, "resume_ttl": 120}


def test_after_a_1001_close_the_client_resumes_with_its_ticket_and_fetches_no_token(
    page: Page,
) -> None:
    record = run(
        page,
        [{"close": 1001, "welcome": WELCOME}, {}],
        '(status, record) => status.state === "open" && record.offered.length === 2',
    )
    assert [offered[1] for offered in record["offered"]][1] == f"wsauth.resume.{TICKET}"
    assert len(record["fetches"]) == 1
    # The ticket is a credential: the page's callback never sees it.
    assert record["messages"][0] == {"type": "welcome", "sub": "alice"}


def test_after_a_4002_close_the_client_takes_a_fresh_token_not_its_ticket(page: Page) -> None:
    record = run(
        page,
        [{"close": 4002, "after": 600, "welcome": WELCOME}, {}],
        '(status, record) => status.state === "open" && record.fetches.length === 2',
    )
    assert all(offered[1].startswith("wsauth.bearer.") for offered in record["offered"])


def test_a_refused_ticket_falls_back_to_a_fresh_token_at_once(page: Page) -> None:
    record = run(
        page,
        [{"close": 1001, "welcome": WELCOME}, {"refuse": True}, {}],
        '(status, record) => status.state === "open" && record.fetches.length === 2',
    )
    kinds = [offered[1].split(".")[1] for offered in record["offered"]]
    assert kinds == ["bearer", "resume", "bearer"]
    closed = [status for status in record["statuses"] if status["state"] == "closed"]
    assert closed[-1]["delay"] == 0


def test_the_client_resubscribes_its_channels_with_the_last_position_after_a_reconnect(
    page: Page,
) -> None:
    message = {"type": "message", "channel": "chat:a", "data": 1, "offset": "7", "epoch": "E1"}
    record = run(
        page,
        [{"close": 1001, "welcome": WELCOME, "messages": [message]}, {}],
        '(status, record) => status.state === "open" && record.offered.length === 2',
        clientOptions={"channels": ["chat:a"]},
    )
    first, second = record["sent"]
    assert first == {"type": "subscribe", "id": 1, "channel": "chat:a"}
    assert second == {
        "type": "subscribe",
        "id": 2,
        "channel": "chat:a",
        "since": {"offset": "7", "epoch": "E1"},
    }


def push(offset: str, epoch: str = "E1", data: Any = None) -> dict[str, Any]:
    return {"type": "push", "data": data, "offset": offset, "epoch": epoch}


def since_offered(offered: list[str]) -> list[str]:
    return [value for value in offered if value.startswith("wsauth.since.")]


def test_without_a_push_position_the_client_offers_no_since_subprotocol(page: Page) -> None:
    record = run(
        page,
        [{"close": 1001, "welcome": WELCOME, "messages": [push("x"), push("1", "a.b")]}, {}],
        '(status, record) => status.state === "open" && record.offered.length === 2',
    )
    # A push without a position (or with one the gateway would refuse) is no position.
    assert [since_offered(offered) for offered in record["offered"]] == [[], []]
    assert record["pushPosition"] is None


def test_the_client_offers_the_users_last_push_position_when_it_resumes_with_a_ticket(
    page: Page,
) -> None:
    welcome = {**WELCOME, "push": {"offset": "3", "epoch": "E1"}}
    record = run(
        page,
        [{"close": 1001, "welcome": welcome, "messages": [push("4"), push("5", data="x")]}, {}],
        '(status, record) => status.state === "open" && record.offered.length === 2',
    )
    first, second = record["offered"]
    assert since_offered(first) == []
    assert second == ["wsauth", f"wsauth.resume.{TICKET}", "wsauth.since.5.E1"]
    assert len(record["fetches"]) == 1
    # The application gets each push with its position, and the welcome's push as sent.
    assert record["messages"][0]["push"] == {"offset": "3", "epoch": "E1"}
    assert record["messages"][2] == {"type": "push", "data": "x", "offset": "5", "epoch": "E1"}
    assert record["pushRecovered"] == []  # no position was offered on the first connection


def test_the_client_offers_its_push_position_beside_a_fresh_token_after_4002(page: Page) -> None:
    welcome = {"type": "welcome", "sub": "alice", "push": {"offset": "8", "epoch": "E1"}}
    record = run(
        page,
        [{"close": 4002, "after": 600, "welcome": welcome}, {}],
        '(status, record) => status.state === "open" && record.fetches.length === 2',
    )
    protocol, bearer, since = record["offered"][1]
    assert (protocol, bearer.startswith("wsauth.bearer."), since) == (
        "wsauth",
        True,
        "wsauth.since.8.E1",
    )


@pytest.mark.parametrize(
    ("frames", "offered"),
    [
        ([push("5"), push("4")], "wsauth.since.5.E1"),  # the later offset wins
        ([push("9"), push("2", "E2")], "wsauth.since.2.E2"),  # a new epoch replaces the old
        ([push("6"), push("7", "bad.epoch"), push("07")], "wsauth.since.6.E1"),  # bad: ignored
    ],
)
def test_the_push_position_is_the_later_offset_in_an_epoch_and_a_new_epoch_replaces_it(
    page: Page, frames: list[dict[str, Any]], offered: str
) -> None:
    record = run(
        page,
        [{"close": 1001, "welcome": WELCOME, "messages": frames}, {}],
        '(status, record) => status.state === "open" && record.offered.length === 2',
    )
    assert since_offered(record["offered"][1]) == [offered]


@pytest.mark.parametrize(
    ("result", "offered"),
    [
        # Missed pushes follow the welcome: the offered position stays until they arrive.
        ({"recovered": True, "offset": "9", "epoch": "E1"}, ["wsauth.since.5.E1"]),
        (
            {"recovered": False, "reason": "history_trimmed", "offset": "9", "epoch": "E1"},
            ["wsauth.since.5.E1"],
        ),
        # The history was lost: the gateway's new position, or none.
        (
            {"recovered": False, "reason": "epoch_changed", "offset": "2", "epoch": "E2"},
            ["wsauth.since.2.E2"],
        ),
        ({"recovered": False, "reason": "epoch_changed"}, []),
        (
            {"recovered": False, "reason": "unknown_position", "offset": "3", "epoch": "E1"},
            ["wsauth.since.3.E1"],
        ),
        # The gateway could not tell: the position is kept.
        ({"recovered": False, "reason": "no_history"}, ["wsauth.since.5.E1"]),
        ({"recovered": False, "reason": "redis_unavailable"}, ["wsauth.since.5.E1"]),
    ],
)
def test_the_welcomes_push_result_is_reported_and_sets_the_position_offered_next(
    page: Page, result: dict[str, Any], offered: list[str]
) -> None:
    first = {**WELCOME, "push": {"offset": "5", "epoch": "E1"}}
    record = run(
        page,
        [
            {"close": 1001, "welcome": first},
            {"close": 1001, "welcome": {**WELCOME, "push": result}},
            {},
        ],
        '(status, record) => status.state === "open" && record.offered.length === 3',
    )
    assert since_offered(record["offered"][1]) == ["wsauth.since.5.E1"]
    assert since_offered(record["offered"][2]) == offered
    assert record["pushRecovered"] == [result]


def test_a_connection_lost_half_way_through_its_recovery_offers_the_last_push_it_got(
    page: Page,
) -> None:
    first = {**WELCOME, "push": {"offset": "5", "epoch": "E1"}}
    recovering = {**WELCOME, "push": {"recovered": True, "offset": "9", "epoch": "E1"}}
    record = run(
        page,
        [
            {"close": 1001, "welcome": first},
            {"close": 1006, "welcome": recovering, "messages": [push("6"), push("7")]},
            {},
        ],
        '(status, record) => status.state === "open" && record.offered.length === 3',
    )
    assert since_offered(record["offered"][2]) == ["wsauth.since.7.E1"]
    assert record["pushPosition"] == {"offset": "7", "epoch": "E1"}
