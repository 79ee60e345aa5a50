"""Channel names: the one grammar every part checks (pure, no I/O).

A channel name is 1 to 128 characters of ``[A-Za-z0-9_.:@-]`` (DESIGN.md,
"Channels and scopes"). An allowlist: no spaces, no ``*`` (which is only a
pattern character in a scope), no braces (so a name never picks its Redis
Cluster hash slot), nothing outside ASCII.
"""

from __future__ import annotations

import re

from wsauth.shared.core.errors import BadChannel

MAX_CHANNEL_LENGTH = 128
CHANNEL_PATTERN = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")

__all__ = ["CHANNEL_PATTERN", "MAX_CHANNEL_LENGTH", "check_channel", "is_channel"]


def is_channel(name: object) -> bool:
    """True when ``name`` is a string in the channel grammar."""
    return isinstance(name, str) and CHANNEL_PATTERN.fullmatch(name) is not None


def check_channel(name: object) -> str:
    """``name`` when it is a valid channel name.

    Raises:
        BadChannel: not a string of 1 to 128 characters of ``[A-Za-z0-9_.:@-]``.
    """
    if not is_channel(name):
        raise BadChannel("a channel name is 1 to 128 characters of [A-Za-z0-9_.:@-]")
    assert isinstance(name, str)
    return name
