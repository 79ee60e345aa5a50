"""The reference docs that are generated from code stay equal to it."""

from __future__ import annotations

from pathlib import Path

from wsauth.shared.core.config import settings_markdown

DOCS = Path(__file__).resolve().parents[3] / "docs"


def test_configuration_reference_lists_every_setting_as_the_code_does() -> None:
    text = (DOCS / "reference" / "configuration.md").read_text()
    start = text.index("<!-- settings-table:start -->\n") + len("<!-- settings-table:start -->\n")
    end = text.index("<!-- settings-table:end -->")
    assert text[start:end] == settings_markdown()
