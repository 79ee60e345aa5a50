"""``{% load wsauth %}``: ``{% ws_token %}`` and ``{% ws_url %}``.

``{% ws_token %}`` mints a fresh token for the logged-in user while the page
renders (the seed pattern: the page connects with it at once; a token works once
and lives ``WSAUTH_TOKEN_TTL`` seconds, so later connections fetch one from the
token view). It needs ``request`` in the context (the
``django.template.context_processors.request`` context processor). For a
visitor who is not logged in, or when no token can be minted (Redis down, no key,
the project's ``SUBJECT``/``SCOPE`` refused), it renders an empty string and logs
why: a page never holds a token that would not work. ``{% ws_token as token %}``
stores it instead, to test it in ``{% if token %}``. Django escapes the value
(a token is base64url and dots: escaping never changes it).

``{% ws_url %}`` renders ``WSAUTH_GATEWAY_URL``.
"""

from __future__ import annotations

import logging
from typing import Any

from django import template

from wsauth.django import conf
from wsauth.shared.core.errors import NotAuthenticated, WsAuthError

log = logging.getLogger("wsauth.django")

register = template.Library()


@register.simple_tag(takes_context=True)  # type: ignore[untyped-decorator]  # Django: no hints
def ws_token(context: Any) -> str:
    request = context.get("request")
    if request is None:
        log.error("{% ws_token %} needs the request context processor: rendered no token")
        return ""
    try:
        return conf.grant_for(request).token
    except NotAuthenticated:
        return ""
    except WsAuthError as error:
        log.warning("{%% ws_token %%} rendered no token: %s (%s)", error.code, error)
        return ""


@register.simple_tag  # type: ignore[untyped-decorator]
def ws_url() -> str:
    return conf.issuer().settings.gateway_url
