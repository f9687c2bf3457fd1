"""The pages and the JSON API; a site includes them with ``path("sessions/", include("qsessions.urls"))``."""

from django.urls import path

from qsessions import api, views

app_name = "qsessions"

urlpatterns = [
    path("", views.session_list, name="session_list"),
    path("revoke-others/", views.session_revoke_others, name="session_revoke_others"),
    path("<slug:session_id>/revoke/", views.session_revoke, name="session_revoke"),
    path("api/", api.session_list, name="api_session_list"),
    path("api/revoke-others/", api.session_revoke_others, name="api_session_revoke_others"),
    path("api/<slug:session_id>/", api.session_revoke, name="api_session_revoke"),
]
