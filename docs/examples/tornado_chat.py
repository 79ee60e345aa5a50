"""A Tornado chat server of its own, with wsauth authenticating every connection.

Run: python tornado_chat.py PORT (settings from the WSAUTH_* environment variables).
Everyone connected to this process is in one room: a text message goes to all.
"""

import asyncio
import json
import signal
import sys

import tornado.httpserver
import tornado.web
import tornado.websocket

from wsauth.tornado import GatewayNode, WsAuthMixin


class ChatHandler(WsAuthMixin, tornado.websocket.WebSocketHandler):
    def initialize(self, node: GatewayNode, room: set["ChatHandler"]) -> None:
        super().initialize(node)
        self.room = room

    def open(self) -> None:
        # Runs only once wsauth admitted the token: current_user is its sub.
        self.room.add(self)
        self.broadcast({"type": "joined", "user": self.current_user})

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.close(1003, "text only")
            return
        self.broadcast({"type": "said", "user": self.current_user, "text": message})

    def on_close(self) -> None:
        self.room.discard(self)
        self.broadcast({"type": "left", "user": self.current_user})

    def broadcast(self, event: dict[str, str]) -> None:
        text = json.dumps(event)
        for member in list(self.room):
            member.send(text)  # queued; dropped if that connection is closing


async def main(port: int) -> None:
    node = GatewayNode.from_settings()  # keys, Redis, pushes and revocations
    room: set[ChatHandler] = set()
    app = tornado.web.Application([(r"/chat", ChatHandler, {"node": node, "room": room})])
    server = tornado.httpserver.HTTPServer(app)
    server.listen(port, address="127.0.0.1")
    await node.start()
    stop = asyncio.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(number, stop.set)
    print(f"chat on ws://127.0.0.1:{port}/chat", flush=True)
    await stop.wait()
    server.stop()  # accept no new connection
    await node.close()  # close the live ones with 1001, then Redis
    await server.close_all_connections()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
