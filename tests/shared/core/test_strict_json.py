"""The one strict JSON reader of tokens and commands: shared/core/strict_json.py."""

from __future__ import annotations

import pytest

from wsauth.shared.core.strict_json import StrictJson


class Refused(Exception):
    pass


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"a": 1, "a": 2}', "duplicate member"),
        ('{"x": {"b": 1, "b": 1}}', "duplicate member"),
        ('{"a": NaN}', "non-standard JSON constant NaN"),
        ("[-Infinity]", "non-standard JSON constant -Infinity"),
    ],
)
def test_a_duplicate_member_or_a_constant_raises_the_readers_own_error(
    text: str, reason: str
) -> None:
    with pytest.raises(Refused, match=reason):
        StrictJson(Refused).loads(text)


def test_an_overflowing_number_is_refused_only_when_asked() -> None:
    assert StrictJson(Refused).loads("[1e999]") == [float("inf")]
    with pytest.raises(Refused, match="number out of range"):
        StrictJson(Refused, finite_numbers=True).loads("[1e999]")
    assert StrictJson(Refused, finite_numbers=True).loads('{"a": [1.5, 2]}') == {"a": [1.5, 2]}


def test_text_that_is_not_json_is_a_value_error_as_for_json_loads() -> None:
    with pytest.raises(ValueError):
        StrictJson(Refused).loads("{")
