"""wsauth's Flask extension: ``from wsauth.flask import WsAuth``.

See :mod:`wsauth.issuer.extension` and docs/howto/flask.md.
"""

from wsauth.issuer.extension import WsAuth, settings_from_config
from wsauth.issuer.host import Identity, ScopeOf, SessionIdOf

__all__ = ["Identity", "ScopeOf", "SessionIdOf", "WsAuth", "settings_from_config"]
