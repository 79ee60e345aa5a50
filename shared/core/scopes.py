"""Channels and the grants of a token's ``scope``: pure decisions, no I/O.

A channel name is 1 to 128 characters of ``A-Z a-z 0-9 _ . : @ -``
(:mod:`wsauth.shared.core.channels`). The ``scope`` claim is at most
:data:`MAX_SCOPE_BYTES` of space-separated grants::

    sub:<pattern>    may subscribe to the channels the pattern matches
    pub:<pattern>    may publish to them

A pattern is an exact channel name (``chat:lobby``) or a prefix ending in
``*`` (``chat:*``, ``room.42.*``; a lone ``*`` matches every channel). ``*``
anywhere else, an empty pattern or any other grant form (``admin``,
``sub:``, ``read:x``) is not a grant.

Nothing but a grant opens a channel: an absent or empty scope grants
nothing, and a ``pub:`` grant does not imply ``sub:``. Where a scope is
decided — the minting API — :func:`parse_scope` refuses anything that is not
a grant (:class:`~wsauth.shared.core.errors.InvalidScope`), so a typo fails
loudly at the host application. The gateway reads a verified token's scope
with :func:`scope_of_claim`, which ignores what is not a grant: an unknown
word there can only grant less, never more (fail closed).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from wsauth.shared.core.channels import CHANNEL_PATTERN, is_channel
from wsauth.shared.core.errors import InvalidScope

MAX_SCOPE_BYTES = 1024
_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_.:@-]{0,127}\*")


class Action(enum.Enum):
    """What a grant allows: ``sub`` (subscribe) or ``pub`` (publish)."""

    SUBSCRIBE = "sub"
    PUBLISH = "pub"


@dataclass(frozen=True, slots=True)
class Grant:
    """One ``sub:<pattern>`` or ``pub:<pattern>``."""

    action: Action
    pattern: str

    @property
    def prefix(self) -> str | None:
        """The prefix of a ``*`` pattern, None for an exact name."""
        return self.pattern[:-1] if self.pattern.endswith("*") else None

    def matches(self, channel: str) -> bool:
        prefix = self.prefix
        return channel == self.pattern if prefix is None else channel.startswith(prefix)

    def __str__(self) -> str:
        return f"{self.action.value}:{self.pattern}"


@dataclass(frozen=True, slots=True)
class Scope:
    """The grants of one token; :data:`NO_GRANTS` when it has none."""

    grants: frozenset[Grant] = frozenset()

    def allows(self, action: Action, channel: str) -> bool:
        """May this scope ``action`` ``channel``? False for a name outside the grammar."""
        if not is_channel(channel):
            return False
        return any(grant.action is action and grant.matches(channel) for grant in self.grants)

    def may_subscribe(self, channel: str) -> bool:
        return self.allows(Action.SUBSCRIBE, channel)

    def may_publish(self, channel: str) -> bool:
        return self.allows(Action.PUBLISH, channel)

    def __str__(self) -> str:
        """The canonical text: grants sorted, one space between."""
        return " ".join(sorted(str(grant) for grant in self.grants))


NO_GRANTS = Scope()


def parse_grant(word: str) -> Grant | None:
    """The grant ``word`` spells, or None when it is not one."""
    action_text, colon, pattern = word.partition(":")
    if not colon:
        return None
    try:
        action = Action(action_text)
    except ValueError:
        return None
    if CHANNEL_PATTERN.fullmatch(pattern) or _PREFIX_PATTERN.fullmatch(pattern):
        return Grant(action, pattern)
    return None


def parse_scope(text: str | None) -> Scope:
    """Parse a scope to mint: every space-separated word must be a grant.

    ``None`` or an empty string is the scope that grants nothing.

    Raises:
        InvalidScope: not a string, over :data:`MAX_SCOPE_BYTES`, another
            separator than a single space, or a word that is not a grant
            (``grant`` in the error's context names the first).
    """
    if text is None:
        return NO_GRANTS
    if not isinstance(text, str):
        raise InvalidScope("scope must be a string")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SCOPE_BYTES:
        raise InvalidScope(f"scope is over {MAX_SCOPE_BYTES} bytes")
    if not text:
        return NO_GRANTS
    grants = []
    for word in text.split(" "):
        grant = parse_grant(word)
        if grant is None:
            raise InvalidScope("not a grant (sub:<pattern> or pub:<pattern>)", grant=word[:64])
        grants.append(grant)
    return Scope(frozenset(grants))


def scope_of_claim(text: str | None) -> Scope:
    """The grants in a verified token's ``scope`` claim; words that are not grants grant nothing."""
    if not isinstance(text, str) or len(text.encode("utf-8", "surrogatepass")) > MAX_SCOPE_BYTES:
        return NO_GRANTS
    grants = (parse_grant(word) for word in text.split())
    return Scope(frozenset(grant for grant in grants if grant is not None))


def lost_channels(channels: frozenset[str] | set[str], scope: Scope) -> frozenset[str]:
    """Of the ``channels`` a connection is subscribed to, those ``scope`` no longer grants."""
    return frozenset(channel for channel in channels if not scope.may_subscribe(channel))
