"""Connect a Python service to the wsauth gateway and print what it receives.

    WSAUTH_CLIENT_ID=c_... WSAUTH_CLIENT_SECRET=... python python_service.py [ISSUER_URL]

It exchanges the client's credentials for a fresh single-use token at the
issuer, opens the WebSocket with ``Authorization: Bearer <token>``, and prints
the gateway's welcome. Needs ``requests`` and ``websockets``.
"""

import asyncio
import json
import os
import sys

import requests
import websockets
from websockets.exceptions import InvalidStatus

ISSUER = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"


def fetch_token(client_id: str, client_secret: str) -> dict:
    """A fresh token: fetch one for every connection and every reconnection."""
    answer = requests.post(f"{ISSUER}/api/tokens", auth=(client_id, client_secret), timeout=10)
    if answer.status_code != 200:
        # Refusals are {"error": "<code>"}: not_authenticated, redis_unavailable, ...
        sys.exit(f"issuer refused: {answer.status_code} {answer.json()['error']}")
    return answer.json()  # {"token": "...", "expires_in": 30, "url": "ws://.../ws"}


async def main() -> None:
    grant = fetch_token(os.environ["WSAUTH_CLIENT_ID"], os.environ["WSAUTH_CLIENT_SECRET"])
    headers = {"Authorization": f"Bearer {grant['token']}"}
    try:
        async with websockets.connect(grant["url"], additional_headers=headers) as socket:
            welcome = json.loads(await socket.recv())
            print(f"connected as {welcome['sub']}")
            # A real service would now read: async for message in socket: ...
    except InvalidStatus as refused:
        # The gateway refuses before the upgrade, with HTTP and {"error": "<code>"}.
        body = json.loads(refused.response.body or b"{}")
        sys.exit(f"gateway refused: {refused.response.status_code} {body.get('error')}")


if __name__ == "__main__":
    asyncio.run(main())
