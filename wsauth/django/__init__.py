"""wsauth for Django projects: a reusable app (``pip install 'wsauth[django]'``).

Add ``"wsauth.django"`` to ``INSTALLED_APPS`` and configure it with one mapping::

    WSAUTH = {
        "KEYS_DIR": BASE_DIR / "keys",           # any WSAUTH_* setting, without the prefix
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "GATEWAY_URL": "wss://ws.example.com/ws",
        "SCOPE": "myproject.chat.scope_for",     # optional: (request) -> scope string or None
    }

Then ``{% load wsauth %}{% ws_token %}`` renders a fresh token for the logged-in
user into the page, ``path("wsauth/", include("wsauth.django.urls"))`` mounts the
token view for ``fetch`` (``POST``, Django's CSRF protection), and a logout
(Django's ``user_logged_out`` signal) revokes the tokens and live connections of
that session. Every token is minted by :class:`wsauth.Issuer`. How-to:
docs/howto/django.md.

Modules::

    conf.py                 settings.WSAUTH -> wsauth Settings, the process's Issuer, who and what
    apps.py                 the AppConfig: logout wired to revocation, system checks
    views.py, urls.py       POST token view
    templatetags/wsauth.py  {% ws_token %}
"""
