"""The test project's URLs: a page with ``{% ws_token %}``, a logout, and the wsauth app."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import logout
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import include, path
from django.views.decorators.csrf import ensure_csrf_cookie


@ensure_csrf_cookie  # type: ignore[untyped-decorator]
def page(request: Any) -> Any:
    return render(request, "page.html")


def sign_out(request: Any) -> Any:
    logout(request)
    return HttpResponse("bye")


urlpatterns = [
    path("", page),
    path("logout", sign_out),
    path("wsauth/", include("wsauth.django.urls")),
]
