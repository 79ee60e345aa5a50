"""``path("wsauth/", include("wsauth.django.urls"))`` mounts ``POST wsauth/token``."""

from django.urls import path

from wsauth.django import views

app_name = "wsauth"

urlpatterns = [path("token", views.token, name="token")]
