from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from tests.testapp.models import UUIDUser

if get_user_model() is UUIDUser:
    admin.site.register(UUIDUser, UserAdmin)
