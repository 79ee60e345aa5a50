"""The demo page in a real headless Chromium against a real issuer, gateway and Redis.

The page uses /static/wsauth.js, so these tests are the browser client's
end-to-end tests: the session cookie, the token fetch with the CSRF header,
the subprotocol handshake, pushes, and what the client does on each close.
"""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import ConsoleMessage, Page, expect

from tests.browser.conftest import ALICE, Stack
from tests.browser.demo_page import DemoPage


def test_logging_in_connects_and_shows_the_welcome_message(demo: DemoPage) -> None:
    console: list[ConsoleMessage] = []
    demo.page.on("console", lambda message: console.append(message))
    demo.log_in(*ALICE)
    demo.expect_state("open")
    expect(demo.messages("welcome")).to_have_count(1)
    expect(demo.messages("welcome")).to_contain_text("connected as alice")
    [jti] = demo.jtis()
    assert not [message.text for message in console if message.type == "error"]
    assert not [message.text for message in console if jti in message.text]


def test_the_page_is_served_with_a_strict_content_security_policy(demo: DemoPage) -> None:
    response = demo.page.goto(f"{demo.base_url}/")
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "script-src 'nonce-" in policy
    module = demo.page.request.get(f"{demo.base_url}/static/wsauth.js")
    assert module.ok
    assert "javascript" in module.headers["content-type"]


def test_the_push_button_delivers_a_push_to_the_page(demo: DemoPage, stack: Stack) -> None:
    demo.log_in(*ALICE)
    demo.expect_state("open")
    stack.wait_for_gateways(1)
    demo.push("ping from the test")
    expect(demo.messages("push")).to_have_count(1)
    expect(demo.messages("push")).to_contain_text('"text":"ping from the test"')


def test_logout_closes_the_socket_with_4001_and_the_client_stops_until_login_again(
    demo: DemoPage,
) -> None:
    demo.log_in(*ALICE)
    demo.expect_state("open")
    fetches_before_logout = demo.token_requests

    demo.log_out()
    demo.expect_state("stopped")
    expect(demo.status_detail).to_contain_text("4001")
    # Stopped means no timer is left: nothing fetches a token until a person logs in again.
    assert demo.page.evaluate("() => document.querySelector('#reconnect').disabled")
    assert demo.token_requests == fetches_before_logout

    demo.page.locator("#login-again").click()
    demo.log_in(*ALICE)
    demo.expect_state("open")
    expect(demo.messages("welcome")).to_have_count(1)  # the page after the new login
    assert demo.token_requests == fetches_before_logout + 1
    assert len(set(demo.jtis())) == 2


def test_the_client_meets_the_max_age_deadline_with_an_in_band_refresh_not_a_reconnect(
    make_stack: Callable[..., Stack], new_page: Callable[[], Page]
) -> None:
    stack = make_stack(max_connection_age=2)
    demo = DemoPage(new_page(), stack.issuer_url)
    demo.log_in(*ALICE)
    demo.expect_state("open")
    # The welcome says expires_in ~2 s; at 80 % of it the client fetches a fresh token and
    # sends `refresh`, so the gateway never closes with 4002.
    demo.page.wait_for_timeout(3_500)
    assert len(demo.jtis()) >= 3
    assert len(set(demo.jtis())) == len(demo.jtis())
    expect(demo.messages("welcome")).to_have_count(1)
    assert not demo.messages("status").filter(has_text="4002").count()


def test_a_client_whose_session_ended_stops_when_the_token_endpoint_answers_401(
    demo: DemoPage, stack: Stack
) -> None:
    demo.log_in(*ALICE)
    demo.expect_state("open")
    demo.page.context.clear_cookies()  # the session is gone, as after a logout in another tab
    stack.gateway.call(stack.gateway.app.gateway.close_connections)  # 1001: going away

    demo.expect_state("stopped")
    expect(demo.status_detail).to_contain_text("HTTP 401")
    expect(demo.messages("status")).to_contain_text(["1001 going away"])
    assert [fetch.status for fetch in demo.token_fetches] == [200, 401]
    expect(demo.page.locator("#login-again")).to_be_visible()
