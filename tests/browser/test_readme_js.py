"""The README's JavaScript snippets (and the browser tutorial's by-hand one) run as shown, in
Chromium, on the demo page of a live issuer and gateway, after logging in as alice.

A snippet runs as a module script of the page, as a page's own module would (the test's
context bypasses the page's CSP, which admits only the page's nonce'd scripts); what it
logs with ``console.log`` is what the test reads.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page

from tests.browser.conftest import ALICE, Stack
from tests.browser.demo_page import DemoPage
from tests.docs.test_snippets import snippet
from tests.support.welcome import without_ticket

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorials" / "browser.md"


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(bypass_csp=True)
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def run_logged(page: Page, stack: Stack, code: str) -> list[Any]:
    """Log in as alice, run ``code`` as a module; the values it logs, until a welcome
    arrives (at most 15 s)."""
    logged: list[Any] = []

    def record(message: ConsoleMessage) -> None:
        if message.type == "log":
            logged.append([arg.json_value() for arg in message.args])

    demo = DemoPage(page, stack.issuer_url)
    demo.log_in(*ALICE)
    demo.expect_state("open")
    page.on("console", record)
    page.add_script_tag(content=code, type="module")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not any(
        {"type": "welcome", "sub": "alice"} in map(without_ticket, values) for values in logged
    ):
        page.wait_for_timeout(50)
    return logged


def test_the_readme_wsauth_js_snippet_connects_and_logs_the_welcome(
    page: Page, stack: Stack
) -> None:
    logged = run_logged(page, stack, snippet("js", 'from "/static/wsauth.js"'))
    assert ["open", ""] in logged  # onStatus: status.state, status.code ?? ""
    assert [{"type": "welcome", "sub": "alice"}] in logged


def test_the_readme_by_hand_snippet_connects_and_logs_the_welcome(page: Page, stack: Stack) -> None:
    logged = run_logged(page, stack, snippet("js", 'fetch("/ws-token"'))
    assert [[without_ticket(value) for value in values] for values in logged] == [
        [{"type": "welcome", "sub": "alice"}]
    ]


def tutorial_snippet(containing: str) -> str:
    (code,) = [
        text
        for text in re.findall(r"^```js\n(.*?)^```$", TUTORIAL.read_text(), re.M | re.S)
        if containing in text
    ]
    return code


def test_the_browser_tutorial_console_snippets_run_and_a_token_works_only_once(
    page: Page, stack: Stack
) -> None:
    """Step 3 connects; step 4, in the same console, reuses its token and is closed (1006)."""
    # A person pastes step 4 after seeing the welcome; the module waits for it likewise.
    welcomed = "await new Promise((done) => socket.addEventListener('message', done));\n"
    code = tutorial_snippet('fetch("/ws-token"') + welcomed + tutorial_snippet("const again")
    logged = run_logged(page, stack, code)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and ["closed", 1006] not in logged:
        page.wait_for_timeout(50)
    expected = [[{"type": "welcome", "sub": "alice"}], ["closed", 1006]]
    seen = [[without_ticket(value) for value in values] for values in logged]
    assert json.dumps(seen) == json.dumps(expected), seen
