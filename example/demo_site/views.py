from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def home(request: HttpRequest) -> HttpResponse:
    sessions = []
    if request.user.is_authenticated:
        sessions = request.user.session_set.active().order_by("-last_activity")
    return render(request, "home.html", {"sessions": sessions})
