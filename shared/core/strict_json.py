"""JSON as RFC 8259 defines it and no more, for what wsauth reads from strangers.

Python's :func:`json.loads` keeps the last of two members with one name and
reads ``NaN``/``Infinity``; a token's claims and a client's commands must not
depend on which duplicate a reader keeps (RFC 8259 §4: names SHOULD be unique;
RFC 7515 §5.2: a JOSE header with duplicates MUST be refused or the last one
taken — we refuse), and must carry only numbers that JSON can carry back.
One :class:`StrictJson` per error type, built once, serves every call.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any


class StrictJson:
    """``loads`` that raises ``error(reason)`` for a duplicate member or a non-standard
    constant (``NaN``, ``Infinity``), and with ``finite_numbers`` for a float that
    overflows (``1e999``). Text that is not JSON raises :class:`ValueError` as
    :func:`json.loads` does (and :class:`RecursionError` when nested too deep)."""

    def __init__(self, error: Callable[[str], Exception], *, finite_numbers: bool = False) -> None:
        self._error = error
        self._options: dict[str, Any] = {
            "object_pairs_hook": self._unique,
            "parse_constant": self._constant,
        }
        if finite_numbers:
            self._options["parse_float"] = self._finite

    def loads(self, text: str) -> Any:
        return json.loads(text, **self._options)

    def _unique(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name, value in pairs:
            if name in result:
                raise self._error("duplicate member")
            result[name] = value
        return result

    def _constant(self, name: str) -> Any:
        raise self._error(f"non-standard JSON constant {name}")

    def _finite(self, text: str) -> float:
        value = float(text)
        if not math.isfinite(value):  # 1e999: JSON cannot carry it back out
            raise self._error("number out of range")
        return value


__all__ = ["StrictJson"]
