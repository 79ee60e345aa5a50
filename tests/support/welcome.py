"""The welcome frame as tests compare it: its resume ticket checked for shape, then dropped.

The gateway's welcome carries a fresh single-use resume ticket (``resume``, 43
base64url characters, and ``resume_ttl``) while tickets are on
(:mod:`wsauth.shared.state.tickets`); tests that check who connected compare the rest.
"""

from __future__ import annotations

import re
from typing import Any

TICKET = re.compile(r"[A-Za-z0-9_-]{43}")


def without_ticket(frame: Any) -> Any:
    """``frame`` without ``resume``/``resume_ttl`` when it is a welcome that has them."""
    if isinstance(frame, dict) and frame.get("type") == "welcome" and "resume" in frame:
        assert TICKET.fullmatch(frame["resume"]), frame["resume"]
        assert isinstance(frame["resume_ttl"], int) and frame["resume_ttl"] > 0
        return {k: v for k, v in frame.items() if k not in ("resume", "resume_ttl")}
    return frame


def welcome_text(sub: str, *, separators: tuple[str, str] = (",", ":")) -> str:
    """A regular expression for the JSON text of ``sub``'s welcome, as json.dumps with
    ``separators`` (or JSON.stringify) writes it, with or without a ticket."""
    item, key = (re.escape(s) for s in separators)
    ticket = f'{item}"resume"{key}"[A-Za-z0-9_-]{{43}}"{item}"resume_ttl"{key}[0-9]+'
    return f'\\{{"type"{key}"welcome"{item}"sub"{key}"{re.escape(sub)}"(?:{ticket})?\\}}'
