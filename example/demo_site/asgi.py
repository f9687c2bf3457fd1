"""The ASGI application, for servers such as uvicorn: ``uvicorn --app-dir example demo_site.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")

application = get_asgi_application()
