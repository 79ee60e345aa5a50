"""A small Python client for non-browser users: get a token, connect, read messages.

::

    document = fetch_token("http://127.0.0.1:8000", "my-client", secret)
    async with await connect(document["url"], document["token"]) as connection:
        async for message in connection:
            print(message)

The token travels in ``Authorization: Bearer`` (never in the URL). Both steps
raise :class:`ClientError` with the server's machine code when refused.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.request
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import tornado.httpclient
import tornado.websocket

from shared.errors import WsAuthError

DEFAULT_TIMEOUT = 10.0
MAX_RESPONSE_BYTES = 64 * 1024


class ClientError(WsAuthError):
    """A request of the client was refused or failed.

    ``http_status`` is the server's status (None when no answer came) and
    ``error`` its ``{"error": code}`` (or a local reason such as ``unreachable``).
    """

    code = "client_error"

    def __init__(self, detail: str, *, http_status: int | None, error: str) -> None:
        super().__init__(detail, http_status=http_status, error=error)
        self.http_status = http_status
        self.error = error


def fetch_token(
    issuer_url: str, client_id: str, client_secret: str, *, timeout: float = DEFAULT_TIMEOUT
) -> dict[str, Any]:
    """POST ``{issuer}/api/tokens`` with HTTP Basic credentials; return the JSON answer.

    Raises:
        ClientError: not an http(s) URL, no answer, a refusal, or not a JSON object.
    """
    if urlsplit(issuer_url).scheme not in ("http", "https"):
        raise ClientError("issuer URL must be http or https", http_status=None, error="bad_url")
    credentials = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        issuer_url.rstrip("/") + "/api/tokens",
        data=b"",
        method="POST",
        headers={"Authorization": f"Basic {credentials}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read(MAX_RESPONSE_BYTES)
    except urllib.error.HTTPError as error:
        with error:
            code = _error_code(error.read(MAX_RESPONSE_BYTES))
        raise ClientError(
            f"issuer refused the token request: {error.code} {code}",
            http_status=error.code,
            error=code,
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ClientError(
            f"issuer unreachable: {reason}", http_status=None, error="unreachable"
        ) from None
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("token"), str):
        raise ClientError("issuer answer has no token", http_status=200, error="bad_response")
    return document


class GatewayConnection:
    """An open connection to the gateway; iterate it for the messages, in order."""

    def __init__(self, connection: tornado.websocket.WebSocketClientConnection) -> None:
        self._connection = connection

    @property
    def subprotocol(self) -> str | None:
        return self._connection.selected_subprotocol

    @property
    def close_code(self) -> int | None:
        return self._connection.close_code

    @property
    def close_reason(self) -> str | None:
        return self._connection.close_reason

    async def receive(self) -> str | bytes | None:
        """The next message, or None once the connection is closed."""
        return await self._connection.read_message()

    def __aiter__(self) -> GatewayConnection:
        return self

    async def __anext__(self) -> str | bytes:
        message = await self.receive()
        if message is None:
            raise StopAsyncIteration
        return message

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (see :meth:`aclose` to wait for its end)."""
        self._connection.close(code, reason)

    async def aclose(self, code: int = 1000, reason: str = "", *, timeout: float = 5.0) -> None:
        """Close, and wait (up to ``timeout``) for the gateway's answer; then the socket is shut."""
        protocol = self._connection.protocol  # close() forgets it
        stream = protocol.stream if protocol is not None else None
        self.close(code, reason)
        try:
            async with asyncio.timeout(timeout):
                while await self._connection.read_message() is not None:
                    pass  # messages after our close are dropped
        except TimeoutError:
            if stream is not None:
                stream.close()

    async def __aenter__(self) -> GatewayConnection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def connect(
    url: str,
    token: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_message_size: int = 16 * 1024 * 1024,
) -> GatewayConnection:
    """Open a WebSocket to the gateway at ``url`` (ws:// or wss://) with ``token``.

    Raises:
        ClientError: not a ws(s) URL, no answer, or the gateway refused the
            handshake (``error`` is its reason code, e.g. ``token_replayed``).
    """
    if urlsplit(url).scheme not in ("ws", "wss"):
        raise ClientError("gateway URL must be ws or wss", http_status=None, error="bad_url")
    request = tornado.httpclient.HTTPRequest(
        url,
        headers={"Authorization": f"Bearer {token}"},
        connect_timeout=timeout,
        request_timeout=timeout,
    )
    try:
        connection = await tornado.websocket.websocket_connect(
            request, max_message_size=max_message_size
        )
    except tornado.httpclient.HTTPClientError as error:
        if error.code == 599:  # Tornado's code for a timeout or a lost connection
            raise ClientError(
                f"gateway unreachable: {error.message}", http_status=None, error="unreachable"
            ) from None
        body = error.response.body if error.response is not None else b""
        code = _error_code(body)
        raise ClientError(
            f"gateway refused the connection: {error.code} {code}",
            http_status=error.code,
            error=code,
        ) from None
    except (OSError, tornado.websocket.WebSocketError) as error:
        raise ClientError(
            f"gateway unreachable: {type(error).__name__}", http_status=None, error="unreachable"
        ) from None
    return GatewayConnection(connection)


def _error_code(body: bytes | None) -> str:
    try:
        document = json.loads(body or b"")
    except ValueError:
        return "unknown"
    error = document.get("error") if isinstance(document, dict) else None
    return error if isinstance(error, str) else "unknown"
