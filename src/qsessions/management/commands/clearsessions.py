# Django's command, made available without ``django.contrib.sessions`` in INSTALLED_APPS.
from django.contrib.sessions.management.commands.clearsessions import Command

__all__ = ["Command"]
