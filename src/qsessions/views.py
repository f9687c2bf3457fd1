"""Pages where signed-in users see their sessions and end them.

Sessions are named by their ``public_id`` only: a session key is a credential and never reaches a URL or a page.
The views that change something accept POST only and check the CSRF token themselves (``csrf_protect``), so they
stay safe on a site without ``CsrfViewMiddleware``.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext, ngettext
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie
from django.views.decorators.http import require_POST, require_safe

from qsessions.models import Session
from qsessions.public_id import current_session_id
from qsessions.revoke import revoke_other_sessions, revoke_session


@require_safe
@login_required
@ensure_csrf_cookie
def session_list(request: HttpRequest) -> HttpResponse:
    """The user's live sessions, each with a form to sign it out.

    ``ensure_csrf_cookie``: without ``CsrfViewMiddleware``, nothing else would set the cookie the forms' tokens match.
    """
    sessions = list(Session.objects.listed_for(request.user))
    current_id = current_session_id(request)
    context = {
        "sessions": sessions,
        "current_session_id": current_id,
        "has_other_sessions": any(session.public_id != current_id for session in sessions),
    }
    return render(request, "qsessions/session_list.html", context)


@require_POST
@csrf_protect
@login_required
def session_revoke(request: HttpRequest, session_id: str) -> HttpResponse:
    """Sign out one of the user's sessions; the current one signs the user out, and the list then asks to log in.

    Another user's id gets the same 404 as an unknown one, never a 403, so that ids cannot be probed.
    """
    is_current = session_id == current_session_id(request)
    if not revoke_session(request.user, session_id, request=request):
        raise Http404(gettext("No such session."))
    if is_current:
        messages.info(request, gettext("You have been signed out."), fail_silently=True)
    else:
        messages.success(request, gettext("The session has been signed out."), fail_silently=True)
    return HttpResponseRedirect(reverse("qsessions:session_list"))


@require_POST
@csrf_protect
@login_required
def session_revoke_others(request: HttpRequest) -> HttpResponse:
    """Sign out every session of the user but the one this request comes with."""
    count = revoke_other_sessions(request.user, request.session.session_key, request=request)
    message = ngettext(
        "%(count)d other session has been signed out.", "%(count)d other sessions have been signed out.", count
    ) % {"count": count}
    messages.success(request, message, fail_silently=True)
    return HttpResponseRedirect(reverse("qsessions:session_list"))
