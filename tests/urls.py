from django.contrib import admin
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from tests.testapp import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("read/", views.read_session),
    path("write/", views.write_session),
    path("login/", csrf_exempt(views.login_view)),
    path("logout/", views.logout_view),
    path("change-password/", csrf_exempt(views.change_password)),
    path("async/read/", views.async_read_session),
    path("async/write/", views.async_write_session),
    path("async/login/", csrf_exempt(views.async_login_view)),
    path("sessions/", include("qsessions.urls")),
]
