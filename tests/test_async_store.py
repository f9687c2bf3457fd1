"""The async session API records exactly what the sync one does."""

from __future__ import annotations

import pytest
from django.contrib.auth import SESSION_KEY

from qsessions import IP_SESSION_KEY
from qsessions.models import Session
from tests.conftest import CHROME_ANDROID, FIREFOX_LINUX

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_thread_connections")]


async def _row(key: str) -> Session:
    return await Session.objects.select_related("user").aget(pk=key)


async def test_acreate_and_asave_record_user_and_client(engine, user):
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await store.acreate()
    await store.aset(SESSION_KEY, str(user.pk))
    await store.aset("theme", "dark")
    await store.asave()

    row = await _row(store.session_key)
    assert (row.user, row.ip, row.user_agent) == (user, "10.1.2.3", CHROME_ANDROID)
    assert row.created_at is not None
    assert row.get_decoded() == {SESSION_KEY: str(user.pk), "theme": "dark"}


async def test_aload_hides_the_client_and_notices_a_new_one(engine):
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await store.aset("theme", "dark")
    await store.asave()

    same = engine(store.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    assert dict(await same.aitems()) == {"theme": "dark"}
    assert not same.modified

    moved = engine(store.session_key, user_agent=FIREFOX_LINUX, ip="10.1.2.3")
    assert await moved.aget("theme") == "dark"
    assert await moved.ahas_key(IP_SESSION_KEY) is False
    assert not moved.modified
    await moved.arecord_activity()
    assert (await _row(store.session_key)).user_agent == FIREFOX_LINUX


async def test_asave_keeps_created_at(engine):
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await store.aset("a", 1)
    await store.asave()
    created_at = (await _row(store.session_key)).created_at
    again = engine(store.session_key, user_agent=CHROME_ANDROID, ip="10.9.9.9")
    await again.aset("a", 2)
    await again.asave()
    row = await _row(store.session_key)
    assert row.created_at == created_at
    assert row.ip == "10.9.9.9"


async def test_store_without_client_keeps_the_saved_client_async(engine):
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await store.aset("a", 1)
    await store.asave()
    elsewhere = engine(store.session_key)
    await elsewhere.aset("a", 2)
    await elsewhere.asave()
    row = await _row(store.session_key)
    assert (row.ip, row.user_agent) == ("10.1.2.3", CHROME_ANDROID)


async def test_acycle_key_aexists_adelete_aflush(engine, user):
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await store.aset(SESSION_KEY, str(user.pk))
    await store.asave()
    old_key = store.session_key

    await store.acycle_key()
    assert store.session_key != old_key
    assert not await store.aexists(old_key)
    assert await store.aexists(store.session_key)
    row = await _row(store.session_key)
    assert (row.user, row.ip, row.user_agent) == (user, "10.1.2.3", CHROME_ANDROID)

    new_key = store.session_key
    await store.aflush()
    assert store.session_key is None
    assert not await store.aexists(new_key)
    assert not await Session.objects.filter(pk=new_key).aexists()

    other = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await other.aset("a", 1)
    await other.asave()
    await other.adelete()
    assert not await Session.objects.filter(pk=other.session_key).aexists()
    assert await engine(other.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3").aload() == {}


async def test_acreate_model_instance(engine, user):
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    instance = await store.acreate_model_instance({SESSION_KEY: str(user.pk), "a": 1})
    assert (instance.user_id, instance.ip, instance.user_agent) == (user.pk, "10.1.2.3", CHROME_ANDROID)
    assert store.decode(instance.session_data)[IP_SESSION_KEY] == "10.1.2.3"


async def test_aclear_expired(engine):
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await store.aset("a", 1)
    await store.aset_expiry(-1)
    await store.asave()
    await engine.aclear_expired()
    assert not await Session.objects.filter(pk=store.session_key).aexists()
