"""wsauth in your own Tornado application: authenticate the handshake of your handler.

::

    from wsauth.tornado import GatewayNode, WsAuthMixin

    class ChatHandler(WsAuthMixin, tornado.websocket.WebSocketHandler):
        def on_message(self, message):
            self.write_message(f"{self.current_user}: {message}")

    node = GatewayNode.from_settings(load_settings())
    app = tornado.web.Application([(r"/chat", ChatHandler, dict(node=node))])
    await node.start()
    ...
    await node.close()

:class:`WsAuthMixin` runs the gateway's admission before the upgrade and
registers the connection for pushes, revocation, maximum age and heartbeats
(what each hook does: :mod:`wsauth.ws.handler`); :class:`GatewayNode` is the
per-process state (keys, Redis, subscription) it needs. The built-in gateway
(``wsauth gateway``) is this same class at ``/ws``, plus protocol v1
(channels, ``send``, ``refresh``: docs/reference/protocol.md) — that handler is
:class:`ProtocolHandler`: subclass it (and set ``send_handler``) for protocol v1
on your own route. How-to: docs/howto/tornado.md.
"""

from wsauth.ws.app import GatewaySocket as ProtocolHandler
from wsauth.ws.handler import WsAuthMixin, access_log
from wsauth.ws.node import GatewayNode

__all__ = ["GatewayNode", "ProtocolHandler", "WsAuthMixin", "access_log"]
