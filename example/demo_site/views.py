from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render


def home(request: HttpRequest) -> HttpResponse:
    """Signed in, the sessions page is home; signed out, a page that says how to sign in."""
    if request.user.is_authenticated:
        return redirect("qsessions:session_list")
    return render(request, "home.html")
