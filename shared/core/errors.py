"""The one exception tree of wsauth.

Every error carries a stable machine ``code``: it is the ``{"error": code}``
body a client sees and the ``reason`` field of the log line. Details that help
an operator go in attributes, never into the client's answer, and never the
token itself.

::

    WsAuthError
    ├── InvalidToken                401
    │   ├── TokenMissing            token_missing
    │   ├── TokenTooLarge           token_too_large
    │   ├── MalformedToken          token_malformed
    │   ├── HeaderNotAllowed        header_not_allowed
    │   ├── WrongTokenType          wrong_typ
    │   ├── UnknownKey              unknown_kid
    │   ├── KeyRevoked              key_revoked (wsauth revoke --kid)
    │   ├── AlgorithmNotAllowed     alg_not_allowed
    │   ├── BadSignature            bad_signature
    │   ├── InvalidClaims           invalid_claims
    │   │   └── InvalidScope        invalid_scope (a scope word that is not a grant, at mint)
    │   ├── Expired                 token_expired
    │   ├── NotYetValid             token_not_yet_valid
    │   ├── LifetimeTooLong         lifetime_too_long
    │   ├── WrongIssuer             wrong_issuer
    │   ├── WrongAudience           wrong_audience
    │   ├── Replayed                token_replayed
    │   ├── Revoked                 token_revoked (its sub or sid was revoked)
    │   └── InvalidTicket           invalid_ticket (a resume ticket, wsauth.shared.state.tickets)
    │       ├── TicketMalformed     ticket_malformed
    │       ├── TicketReplayed      ticket_replayed
    │       ├── TicketExpired       ticket_expired
    │       └── TicketRevoked       ticket_revoked
    ├── BadRequest                  400
    │   ├── MultipleTokens          multiple_tokens
    │   ├── BadEvent                bad_event (push/revoke event malformed)
    │   ├── BadChannel              bad_channel (a channel name outside the grammar)
    │   └── EventTooLarge           413  event_too_large
    ├── NotAuthenticated            401  not_authenticated (issuer: no session / bad credentials)
    ├── Forbidden                   403  forbidden (e.g. an API client without the push permission)
    │   ├── OriginNotAllowed        origin_not_allowed
    │   ├── CsrfRejected            csrf_rejected
    │   └── HostRefused             host_refused (a host's identity/scope callable failed)
    ├── RateLimited                 429  rate_limited (``retry_after`` seconds)
    ├── CommandError                     bad_command (a socket command refused: a reply, never HTTP)
    │   ├── MalformedFrame               bad_json
    │   ├── UnknownCommand               unknown_type
    │   ├── NotGranted                   not_granted (the connection's scope does not grant it)
    │   ├── TooManySubscriptions         too_many_subscriptions
    │   └── SubjectMismatch              subject_mismatch (refresh with another sub or sid)
    ├── Unavailable                 503  redis_unavailable / no_signing_key / keyset_stale /
    │                                    jwks_invalid
    ├── ConfigError                      bad_config (start-up; never an HTTP answer)
    └── KeyStoreError                    key_store (CLI; exit status 2)
"""

from __future__ import annotations

from typing import ClassVar


class WsAuthError(Exception):
    """Root of every wsauth error."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500

    def __init__(self, detail: str = "", **context: object) -> None:
        super().__init__(detail or self.code)
        self.detail = detail
        self.context = context


class InvalidToken(WsAuthError):
    """The token cannot be accepted. The subclass says why."""

    code = "invalid_token"
    status = 401


class TokenMissing(InvalidToken):
    code = "token_missing"


class TokenTooLarge(InvalidToken):
    code = "token_too_large"


class MalformedToken(InvalidToken):
    code = "token_malformed"


class HeaderNotAllowed(InvalidToken):
    code = "header_not_allowed"


class WrongTokenType(InvalidToken):
    code = "wrong_typ"


class UnknownKey(InvalidToken):
    code = "unknown_kid"


class KeyRevoked(InvalidToken):
    """The token's key was revoked on this gateway (``wsauth revoke --kid``)."""

    code = "key_revoked"


class AlgorithmNotAllowed(InvalidToken):
    code = "alg_not_allowed"


class BadSignature(InvalidToken):
    code = "bad_signature"


class InvalidClaims(InvalidToken):
    code = "invalid_claims"


class InvalidScope(InvalidClaims):
    """A scope to mint holds a word that is not a grant (:mod:`wsauth.shared.core.scopes`)."""

    code = "invalid_scope"


class Expired(InvalidToken):
    code = "token_expired"


class NotYetValid(InvalidToken):
    code = "token_not_yet_valid"


class LifetimeTooLong(InvalidToken):
    code = "lifetime_too_long"


class WrongIssuer(InvalidToken):
    code = "wrong_issuer"


class WrongAudience(InvalidToken):
    code = "wrong_audience"


class Replayed(InvalidToken):
    """The jti was already consumed, has expired from Redis, or was never issued."""

    code = "token_replayed"


class Revoked(InvalidToken):
    """The token's session (``sid``) was revoked, or its ``sub`` after the token was minted."""

    code = "token_revoked"


class InvalidTicket(InvalidToken):
    """A resume ticket cannot be accepted. The subclass says why."""

    code = "invalid_ticket"


class TicketMalformed(InvalidTicket):
    """Not the shape of a resume ticket (a token offered as a ticket lands here)."""

    code = "ticket_malformed"


class TicketReplayed(InvalidTicket):
    """No record for the ticket: used, expired from Redis, or never issued."""

    code = "ticket_replayed"


class TicketExpired(InvalidTicket):
    """The connection's re-authentication deadline has passed: a fresh token is needed."""

    code = "ticket_expired"


class TicketRevoked(InvalidTicket):
    """Its ``sub`` or ``sid`` was revoked, or the key of its original token is gone."""

    code = "ticket_revoked"


class BadRequest(WsAuthError):
    code = "bad_request"
    status = 400


class MultipleTokens(BadRequest):
    code = "multiple_tokens"


class BadEvent(BadRequest):
    """A push or revoke event is not what :mod:`wsauth.shared.state.events` defines."""

    code = "bad_event"


class BadChannel(BadRequest):
    """A channel name outside :data:`wsauth.shared.core.channels.CHANNEL_PATTERN`."""

    code = "bad_channel"


class EventTooLarge(BadRequest):
    """An encoded event is over :data:`wsauth.shared.state.events.MAX_EVENT_BYTES`."""

    code = "event_too_large"
    status = 413


class NotAuthenticated(WsAuthError):
    """The issuer does not know who is asking (no session, wrong credentials)."""

    code = "not_authenticated"
    status = 401


class Forbidden(WsAuthError):
    code = "forbidden"
    status = 403


class OriginNotAllowed(Forbidden):
    code = "origin_not_allowed"


class CsrfRejected(Forbidden):
    code = "csrf_rejected"


class HostRefused(Forbidden):
    """A host application's identity, session or scope callable raised or gave a value
    that cannot be minted (:mod:`wsauth.flask`): no token; the detail says which."""

    code = "host_refused"


class RateLimited(WsAuthError):
    """Too many requests from one client IP or principal; retry after ``retry_after`` s."""

    code = "rate_limited"
    status = 429

    def __init__(self, detail: str = "", *, retry_after: int = 1, **context: object) -> None:
        super().__init__(detail, retry_after=retry_after, **context)
        self.retry_after = max(1, int(retry_after))


class CommandError(WsAuthError):
    """A command on an open connection is refused; the reply carries ``code``
    (docs/reference/protocol.md). Never an HTTP answer."""

    code = "bad_command"
    status = 400


class MalformedFrame(CommandError):
    """Not a JSON object in a text frame."""

    code = "bad_json"


class UnknownCommand(CommandError):
    code = "unknown_type"


class NotGranted(CommandError):
    """The connection's current scope does not grant this channel action."""

    code = "not_granted"
    status = 403


class TooManySubscriptions(CommandError):
    code = "too_many_subscriptions"


class SubjectMismatch(CommandError):
    """A ``refresh`` token is for another ``sub`` or ``sid`` than the connection's."""

    code = "subject_mismatch"
    status = 403


class Unavailable(WsAuthError):
    """A dependency (Redis) cannot answer: fail closed."""

    code = "redis_unavailable"
    status = 503


class NoSigningKey(Unavailable):
    code = "no_signing_key"


class KeysetStale(Unavailable):
    """The gateway's keyset could not be refreshed for longer than WSAUTH_JWKS_MAX_STALENESS."""

    code = "keyset_stale"


class JwksInvalid(Unavailable):
    """The key store's jwks.json does not pass the checks a gateway makes: not served."""

    code = "jwks_invalid"


class ConfigError(WsAuthError):
    """A setting has a bad value. ``str()`` is one line naming the setting."""

    code = "bad_config"

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}", setting=setting)
        self.setting = setting
        self.problem = problem


class KeyStoreError(WsAuthError):
    """A key store operation was refused; the store is unchanged."""

    code = "key_store"
