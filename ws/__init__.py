"""The Tornado gateway: authenticate the WebSocket handshake, then hold the connection.

Modules::

    handshake.py   pure checks: Origin, RFC 6455 request, the one token source
    keys.py        the public keyset from jwks.json, reloaded on change
    registry.py    live connections by sub and sid (pure data structure)
    gateway.py     one node's state and the admission pipeline (no Tornado)
    handler.py     WsAuthMixin: the admission in front of any WebSocketHandler (public)
    node.py        GatewayNode: a node's state built from settings, started and stopped (public)
    app.py         the built-in gateway's handlers (GatewaySocket is the mixin) and make_app()
    server.py      serve/run with clean shutdown
    client.py      a Python client for non-browser users
    cli.py         `wsauth gateway` and `wsauth connect`
"""

if __name__ != "wsauth.ws":  # one module, one name: never importable as top-level `ws`
    raise ImportError(f"import wsauth.ws, not {__name__}: wsauth installs one package, `wsauth`")


from wsauth.ws.app import make_app

__all__ = ["make_app"]
