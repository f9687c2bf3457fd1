"""The test project as an ASGI application, for the tests that serve it through a real server in another process.

That process must use the test run's database and cache, whose names only the test run knows: it passes them in
``QSESSIONS_TEST_SERVE_DB`` (the database's ``NAME``), ``QSESSIONS_TEST_SERVE_CACHE_PREFIX`` and
``QSESSIONS_TEST_SERVE_ENGINE`` (``SESSION_ENGINE``).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from django.conf import settings
from django.core.asgi import get_asgi_application

# Read when the application is built (the engine) or on first use (the database and cache), so not yet.
settings.DATABASES["default"]["NAME"] = os.environ["QSESSIONS_TEST_SERVE_DB"]
if "QSESSIONS_TEST_SERVE_CACHE_PREFIX" in os.environ:
    settings.CACHES["default"]["KEY_PREFIX"] = os.environ["QSESSIONS_TEST_SERVE_CACHE_PREFIX"]
settings.ALLOWED_HOSTS = ["127.0.0.1"]
settings.SESSION_ENGINE = os.environ.get("QSESSIONS_TEST_SERVE_ENGINE", settings.SESSION_ENGINE)

application = get_asgi_application()
