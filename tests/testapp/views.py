"""Small views that touch the session the way real pages do, sync and async."""

from django.contrib.auth import aauthenticate, alogin, authenticate, login, logout, update_session_auth_hash
from django.http import HttpRequest, HttpResponse, JsonResponse


def read_session(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"user": request.user.get_username(), "data": dict(request.session.items())})


def write_session(request: HttpRequest) -> HttpResponse:
    request.session["counter"] = request.session.get("counter", 0) + 1
    return JsonResponse({"counter": request.session["counter"]})


def login_view(request: HttpRequest) -> HttpResponse:
    user = authenticate(request, username=request.POST["username"], password=request.POST["password"])
    if user is None:
        return HttpResponse(status=403)
    login(request, user)
    return HttpResponse("ok")


def change_password(request: HttpRequest) -> HttpResponse:
    """What Django's PasswordChangeView does once its form is valid."""
    request.user.set_password(request.POST["password"])
    request.user.save()
    update_session_auth_hash(request, request.user)
    return HttpResponse("ok")


def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return HttpResponse("ok")


async def async_read_session(request: HttpRequest) -> HttpResponse:
    user = await request.auser()
    return JsonResponse({"user": user.get_username(), "data": dict(await request.session.aitems())})


async def async_write_session(request: HttpRequest) -> HttpResponse:
    counter = await request.session.aget("counter", 0) + 1
    await request.session.aset("counter", counter)
    return JsonResponse({"counter": counter})


async def async_login_view(request: HttpRequest) -> HttpResponse:
    user = await aauthenticate(request, username=request.POST["username"], password=request.POST["password"])
    if user is None:
        return HttpResponse(status=403)
    await alogin(request, user)
    return HttpResponse("ok")
