"""JSON endpoints for the same things the pages do, for a site's own front end.

They answer in JSON even when something is wrong (401 for an anonymous request rather than a redirect to the login
page, 404 for an unknown id), except where Django answers first: 405 for a wrong method, 403 for a failed CSRF check.
Writes are CSRF-protected because the API is authenticated by the session cookie, like the pages.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from qsessions import devices
from qsessions.models import Session
from qsessions.public_id import current_session_id
from qsessions.revoke import revoke_other_sessions, revoke_session

View = Callable[..., HttpResponse]


def _error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _authenticated(view: View) -> View:
    """``login_required`` for an API: a 401 in JSON, since a script cannot follow a redirect to a login form."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return _error(gettext("Authentication required."), 401)
        return view(request, *args, **kwargs)

    return wrapper


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _session_json(session: Session, current_id: str | None) -> dict[str, Any]:
    info = session.device_info
    return {
        "id": session.public_id,
        "current": session.public_id == current_id,
        "device": session.device_summary,
        "browser": devices.browser(info),
        "os": devices.operating_system(info),
        "ip": session.ip,
        "location": session.location,
        "created_at": _iso(session.created_at),
        # Rows the published package wrote have no last_activity; their last save is the best estimate.
        "last_activity": _iso(session.last_activity or session.updated_at),
        "expire_date": _iso(session.expire_date),
    }


@require_safe
@_authenticated
def session_list(request: HttpRequest) -> HttpResponse:
    """``{"sessions": [...]}``: the user's live sessions, most recently active first, as the page lists them."""
    current_id = current_session_id(request)
    sessions = Session.objects.listed_for(request.user)
    return JsonResponse({"sessions": [_session_json(session, current_id) for session in sessions]})


@require_http_methods(["DELETE", "POST"])
@csrf_protect
@_authenticated
def session_revoke(request: HttpRequest, session_id: str) -> HttpResponse:
    """``{"revoked": 1, "current": bool}``; DELETE is the natural verb, POST serves clients that only send forms."""
    is_current = session_id == current_session_id(request)
    if not revoke_session(request.user, session_id, request=request):
        return _error(gettext("No such session."), 404)
    return JsonResponse({"revoked": 1, "current": is_current})


@require_POST
@csrf_protect
@_authenticated
def session_revoke_others(request: HttpRequest) -> HttpResponse:
    """``{"revoked": N}``: every session of the user but the current one is signed out."""
    return JsonResponse({"revoked": revoke_other_sessions(request.user, request.session.session_key, request=request)})
