"""The demo page's layout in Chromium at a narrow (phone) and a wide (desktop) width.

Each test saves screenshots (to ``$WSAUTH_SCREENSHOTS`` when set, else the test's
temporary directory) so a person can look at the page; the assertions check what
the screenshots should show: the connection bar's buttons stay together on one row
whatever the status detail says, nothing is wider than the window, and what the page
shows after logout is only what is still true.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import ALICE, Stack
from tests.browser.demo_page import DemoPage

WIDTHS = {"narrow": (360, 740), "wide": (1280, 800)}
# A close reason is at most 123 bytes (RFC 6455); the page adds the code, its name, the delay.
LONG_DETAIL = (
    "1011 internal error “" + "the gateway could not set up the connection, " * 2 + "please retry"
    "”; retrying in 12.3 s"
)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("WSAUTH_SCREENSHOTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def box(locator: Locator) -> dict[str, float]:
    found = locator.bounding_box()
    assert found is not None, f"{locator} is not visible"
    return found


def row_of(locator: Locator) -> float:
    """The vertical centre of an element: elements on one row share it."""
    found = box(locator)
    return found["y"] + found["height"] / 2


def assert_fits_the_window(page: Page) -> None:
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"the page is {width[0]}px wide in a {width[1]}px window"


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_a_long_status_detail_keeps_the_connection_buttons_together_on_one_row(
    demo: DemoPage, shots: Path, width: str
) -> None:
    page = demo.page
    page.set_viewport_size(dict(zip(("width", "height"), WIDTHS[width], strict=True)))  # type: ignore[arg-type]
    demo.log_in(*ALICE)
    demo.expect_state("open")
    page.screenshot(path=str(shots / f"demo-{width}-open.png"), full_page=True)

    reconnect, disconnect = page.locator("#reconnect"), page.locator("#disconnect")
    buttons_row = row_of(reconnect)
    page.evaluate(
        "(text) => { document.querySelector('#status-detail').textContent = text; }", LONG_DETAIL
    )
    page.screenshot(path=str(shots / f"demo-{width}-long-detail.png"), full_page=True)

    assert row_of(reconnect) == pytest.approx(buttons_row, abs=1)  # the detail moved nothing
    assert row_of(disconnect) == pytest.approx(buttons_row, abs=1)
    assert box(disconnect)["x"] > box(reconnect)["x"]
    if width == "wide":  # room enough: badge and buttons on one row
        assert row_of(demo.status) == pytest.approx(buttons_row, abs=2)
    detail = box(demo.status_detail)
    assert detail["y"] >= box(disconnect)["y"] + box(disconnect)["height"]  # below the buttons
    assert detail["x"] + detail["width"] <= WIDTHS[width][0]
    assert_fits_the_window(page)


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_after_logout_the_page_no_longer_says_sent_and_offers_no_push(
    demo: DemoPage, stack: Stack, shots: Path, width: str
) -> None:
    page = demo.page
    page.set_viewport_size(dict(zip(("width", "height"), WIDTHS[width], strict=True)))  # type: ignore[arg-type]
    demo.log_in(*ALICE)
    demo.expect_state("open")
    stack.wait_for_gateways(1)
    demo.push("before logout")
    page.screenshot(path=str(shots / f"demo-{width}-pushed.png"), full_page=True)

    demo.log_out()
    demo.expect_state("stopped")
    expect(page.locator("#push-result")).to_have_text("")
    expect(page.locator("#push")).to_be_disabled()
    expect(page.locator("#push-text")).to_be_disabled()
    page.screenshot(path=str(shots / f"demo-{width}-logged-out.png"), full_page=True)
    assert_fits_the_window(page)
