from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from demo_site import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("sessions/", include("qsessions.urls")),
    path("admin/", admin.site.urls),
]

if settings.LOAD_TEST:
    urlpatterns.append(path("load/", include("demo_site.load")))
