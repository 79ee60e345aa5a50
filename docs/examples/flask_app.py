"""A Flask app with its own login (Flask-Login) that adds wsauth: docs/howto/flask.md.

    EXAMPLE_SECRET_KEY=... WSAUTH_KEYS_DIR=keys WSAUTH_REDIS_URL=redis://127.0.0.1:6379/0 \\
    WSAUTH_ISSUER=http://127.0.0.1:5000 python flask_app.py --port 5000

The app's users log in with the app's own form; wsauth only mints tokens for
whoever Flask-Login says is logged in. The page gets a token rendered into it
(``{{ ws_token() }}``) and opens the WebSocket with it; each reconnect
fetches a fresh one from ``POST /wsauth/ws-token``. Logging out closes the
user's sockets (4001) on every gateway. Needs ``flask-login``.
"""

from __future__ import annotations

import argparse
import os

from flask import Flask, redirect, render_template_string, request, url_for
from flask_login import (
    LoginManager,
    UserMixin,
    login_required,
    login_user,
    logout_user,
)
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response

from wsauth.flask import WsAuth

# Your app's user table. The example has one user.
USERS = {"alice": generate_password_hash("alice-password-123")}


class User(UserMixin):
    def __init__(self, name: str) -> None:
        self.id = name


PAGE = """<!doctype html>
<title>chat</title>
{% if current_user.is_authenticated %}
  <p>Hello {{ current_user.id }}.</p>
  <form method="post" action="{{ url_for('logout') }}"><button>Log out</button></form>
  <pre id="log"></pre>
  <button id="reconnect">Reconnect</button>
  <script type="module">
    const log = document.getElementById("log");
    const show = (line) => { log.textContent += line + "\\n"; };
    function connect(token, url) {
      // The token goes in the subprotocol header: never in the URL, never in a log.
      const socket = new WebSocket(url, ["wsauth", "wsauth.bearer." + token]);
      socket.onmessage = (event) => show(event.data);
      socket.onclose = (event) => show("closed " + event.code);
    }
    // The seed: a token minted while this page rendered.
    connect({{ ws_token() | tojson }}, {{ gateway_url | tojson }});
    // Every later connection fetches a fresh token: each one works once.
    document.getElementById("reconnect").onclick = async () => {
      const answer = await fetch("{{ url_for('wsauth.ws_token') }}", {
        method: "POST", headers: {"X-WSAuth-CSRF": "1"},
      });
      if (!answer.ok) { show("refused " + (await answer.json()).error); return; }
      const grant = await answer.json();   // {"token", "expires_in", "url"}
      connect(grant.token, grant.url);
    };
  </script>
{% else %}
  <form method="post" action="{{ url_for('login') }}">
    <input name="username" autocomplete="username">
    <input name="password" type="password" autocomplete="current-password">
    <button>Log in</button>
  </form>
{% endif %}
"""


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = os.environ["EXAMPLE_SECRET_KEY"]  # the app's own session
    # wsauth settings: WSAUTH_* variables, or WSAUTH_* entries of app.config.

    login_manager = LoginManager(app)

    @login_manager.user_loader
    def load_user(user_id: str) -> User | None:
        return User(user_id) if user_id in USERS else None

    # After LoginManager: wsauth asks Flask-Login's current_user who is logged in.
    # The scope: each user may subscribe to their own channel and to the lobby.
    wsauth = WsAuth(scope=lambda sub: f"sub:user:{sub} sub:chat:lobby pub:chat:lobby")
    wsauth.init_app(app)  # POST /wsauth/ws-token, GET /wsauth/.well-known/jwks.json, ws_token()

    @app.get("/")
    def index() -> str:
        gateway_url = wsauth.issuer().settings.gateway_url
        return render_template_string(PAGE, gateway_url=gateway_url)

    @app.post("/login")
    def login() -> Response:
        # (A real app also protects its forms against CSRF, e.g. with Flask-WTF.)
        name = request.form.get("username", "")
        stored = USERS.get(name)
        if stored and check_password_hash(stored, request.form.get("password", "")):
            login_user(User(name))
        return redirect(url_for("index"), code=303)

    @app.post("/logout")
    @login_required
    def logout() -> Response:
        logout_user()  # wsauth hears it: this session's sockets close, its tokens die
        return redirect(url_for("index"), code=303)

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000)
    arguments = parser.parse_args()
    create_app().run(host="127.0.0.1", port=arguments.port)
