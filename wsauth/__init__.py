"""wsauth: short-lived, single-use tokens for authenticating WebSocket connections.

The one import name of the project. The repository keeps its three parts at
its top (``shared/``, ``issuer/``, ``ws/``); the wheel installs them here, as
``wsauth.shared`` (code both services use), ``wsauth.issuer`` (the Flask
issuer) and ``wsauth.ws`` (the Tornado gateway), and nothing else at top
level. Each is importable under that one name only.
"""

__all__: list[str] = []
