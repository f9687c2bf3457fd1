from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from qsessions.models import Session
from tests.conftest import CHROME_ANDROID

pytestmark = pytest.mark.django_db


def test_clearsessions_deletes_expired_sessions_only(engine):
    keys = []
    for _ in range(4):
        store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
        store["a"] = 1
        store.save()
        keys.append(store.session_key)
    Session.objects.filter(pk__in=keys[:3]).update(expire_date=timezone.now() - timedelta(seconds=1))

    call_command("clearsessions")

    assert list(Session.objects.values_list("pk", flat=True)) == keys[3:]
