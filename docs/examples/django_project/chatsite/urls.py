from django.contrib.auth import views as auth
from django.urls import include, path

from chatsite import views

urlpatterns = [
    path("", views.chat, name="chat"),
    path("login/", auth.LoginView.as_view(), name="login"),
    path("logout/", auth.LogoutView.as_view(next_page="/login/"), name="logout"),
    path("wsauth/", include("wsauth.django.urls")),  # POST /wsauth/token
]
