"""JSON views for the load test (``bench/load.py``), mounted at ``load/`` only with ``QSESSIONS_DEMO_LOAD=1``.

Each view exists twice, with the same answers: under ``load/sync/`` with the sync session API, for WSGI servers,
and under ``load/async/`` with the async one (``aget``/``aset``, ``alogin``, ``alogout`` which flushes with
``aflush``, ``request.auser()``), for ASGI servers. ``qsessions.revoke`` is sync only, so the async view calls it
through ``sync_to_async``.

A request without a signed-in session gets a 401 from every view but ``signin``. The views are exempt from CSRF
checks: the load test's clients are scripts that post plain forms, and the views exist only when asked for.
"""

from asgiref.sync import sync_to_async
from django.contrib.auth import aauthenticate, alogin, alogout, authenticate, login, logout
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from qsessions.models import make_public_id
from qsessions.revoke import revoke_session

COUNTER = "load_counter"


def _anonymous() -> JsonResponse:
    return JsonResponse({"error": "not signed in"}, status=401)


def _signed_in(request: HttpRequest, user) -> JsonResponse:
    """The user and the public id of the session the sign-in made: other clients of the user revoke it by that id."""
    return JsonResponse({"user": user.get_username(), "id": make_public_id(request.session.session_key)})


def _revoked(request: HttpRequest, found: bool) -> JsonResponse:
    if not found:
        return JsonResponse({"error": "no such session"}, status=404)
    return JsonResponse({"revoked": request.POST["id"]})


# Sync, for WSGI.


@csrf_exempt
@require_POST
def signin(request):
    user = authenticate(request, username=request.POST.get("username"), password=request.POST.get("password"))
    if user is None:
        return JsonResponse({"error": "wrong username or password"}, status=401)
    login(request, user)
    return _signed_in(request, user)


@csrf_exempt
@require_POST
def signout(request):
    if not request.user.is_authenticated:
        return _anonymous()
    logout(request)
    return JsonResponse({})


@require_GET
def whoami(request):
    if not request.user.is_authenticated:
        return _anonymous()
    return JsonResponse({"user": request.user.get_username(), "id": make_public_id(request.session.session_key)})


@require_GET
def read(request):
    if not request.user.is_authenticated:
        return _anonymous()
    return JsonResponse({"counter": request.session.get(COUNTER, 0)})


@csrf_exempt
@require_POST
def write(request):
    """Add one to the session's counter and answer with the new value."""
    if not request.user.is_authenticated:
        return _anonymous()
    counter = request.session[COUNTER] = request.session.get(COUNTER, 0) + 1
    return JsonResponse({"counter": counter})


@csrf_exempt
@require_POST
def revoke(request):
    """Sign out the user's session whose public id is posted as ``id``."""
    if not request.user.is_authenticated:
        return _anonymous()
    return _revoked(request, revoke_session(request.user, request.POST["id"], request=request))


# Async, for ASGI.


@csrf_exempt
@require_POST
async def asignin(request):
    user = await aauthenticate(request, username=request.POST.get("username"), password=request.POST.get("password"))
    if user is None:
        return JsonResponse({"error": "wrong username or password"}, status=401)
    await alogin(request, user)
    return _signed_in(request, user)


@csrf_exempt
@require_POST
async def asignout(request):
    if not (await request.auser()).is_authenticated:
        return _anonymous()
    await alogout(request)
    return JsonResponse({})


@require_GET
async def awhoami(request):
    user = await request.auser()
    if not user.is_authenticated:
        return _anonymous()
    return JsonResponse({"user": user.get_username(), "id": make_public_id(request.session.session_key)})


@require_GET
async def aread(request):
    if not (await request.auser()).is_authenticated:
        return _anonymous()
    return JsonResponse({"counter": await request.session.aget(COUNTER, 0)})


@csrf_exempt
@require_POST
async def awrite(request):
    if not (await request.auser()).is_authenticated:
        return _anonymous()
    counter = await request.session.aget(COUNTER, 0) + 1
    await request.session.aset(COUNTER, counter)
    return JsonResponse({"counter": counter})


@csrf_exempt
@require_POST
async def arevoke(request):
    user = await request.auser()
    if not user.is_authenticated:
        return _anonymous()
    return _revoked(request, await sync_to_async(revoke_session)(user, request.POST["id"], request=request))


VIEWS = {
    "sync": {"signin": signin, "signout": signout, "whoami": whoami, "read": read, "write": write, "revoke": revoke},
    "async": {
        "signin": asignin,
        "signout": asignout,
        "whoami": awhoami,
        "read": aread,
        "write": awrite,
        "revoke": arevoke,
    },
}

urlpatterns = [path(f"{mode}/{name}/", view) for mode, views in VIEWS.items() for name, view in views.items()]
