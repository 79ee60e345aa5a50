from django.contrib.auth.decorators import login_required
from django.shortcuts import render


@login_required(login_url="/login/")
def chat(request):
    return render(request, "chat.html")


def scope_for(request):
    """The token's scope: every user may read the lobby, and write to it once in it."""
    return "sub:chat:lobby pub:chat:lobby"
