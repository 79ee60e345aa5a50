"""The bare Flask JSON endpoint the issuer is measured against.

``POST /api/tokens`` answers a JSON document of the same shape and about the
same size as the issuer's token answer, with no authentication, no signing
and no Redis: what Flask and the WSGI server cost on their own. Run it with
``gunicorn -w 2 'bench.bare:create_app()'``.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify

# As long as an EdDSA token of the issuer for an API client (410 characters).
_TOKEN = "x" * 410


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/api/tokens")
    def tokens() -> Response:
        response = jsonify(token=_TOKEN, expires_in=30, url="ws://127.0.0.1:8765/ws")
        response.headers["Cache-Control"] = "no-store"
        return response

    return app
