"""Translations: Persian pages, API and admin; a catalogue that is complete, compiled and in step with the code."""

from __future__ import annotations

import ast
import gettext
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from qsessions import devices
from qsessions.models import Session
from tests.conftest import CHROME_ANDROID, saved
from tests.signed_in import sign_in

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "qsessions"
PO = PACKAGE / "locale" / "fa" / "LC_MESSAGES" / "django.po"
MO = PO.with_suffix(".mo")
DOCS = PACKAGE.parent.parent / "docs" / "translations.md"

# Skipped on a machine without GNU gettext, so that the README's test command works anywhere; CI installs it and
# sets CI, where a missing gettext fails instead of skipping.
needs_gettext = pytest.mark.skipif(
    not os.environ.get("CI") and (shutil.which("xgettext") is None or shutil.which("msgmerge") is None),
    reason="makemessages needs GNU gettext (apt-get install gettext)",
)


@dataclass
class Entry:
    """One message of a .po file."""

    msgid: str = ""
    msgctxt: str | None = None
    msgid_plural: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False

    @property
    def key(self) -> tuple[str | None, str, str | None]:
        return self.msgctxt, self.msgid, self.msgid_plural


def parse_po(text: str) -> list[Entry]:
    """The entries of a .po file, header included (its ``msgid`` is ``""``), obsolete ones marked as such."""
    entries: list[Entry] = []
    entry, target = Entry(), ""
    for raw in [*text.splitlines(), ""]:
        line = raw.strip()
        obsolete = line.startswith("#~")
        if obsolete:
            line = line[2:].strip()
        if not line:
            if target:
                entries.append(entry)
            entry, target = Entry(), ""
            continue
        if line.startswith("#,"):
            entry.flags.update(flag.strip() for flag in line[2:].split(","))
            continue
        if line.startswith("#"):
            continue
        entry.obsolete = entry.obsolete or obsolete
        if line.startswith('"'):
            value = ast.literal_eval(line)
        else:
            keyword, literal = line.split(" ", 1)
            target, value = keyword, ast.literal_eval(literal)
            if target.startswith("msgstr"):
                entry.msgstr.setdefault(int(target[7:-1]) if "[" in target else 0, "")
        if target == "msgid":
            entry.msgid += value
        elif target == "msgctxt":
            entry.msgctxt = (entry.msgctxt or "") + value
        elif target == "msgid_plural":
            entry.msgid_plural = (entry.msgid_plural or "") + value
        else:
            index = int(target[7:-1]) if "[" in target else 0
            entry.msgstr[index] += value
    return entries


def compiled(entries: list[Entry]) -> dict[object, str]:
    """What ``GNUTranslations`` reads from the .mo that these entries compile to (fuzzy ones are left out)."""
    catalog: dict[object, str] = {}
    for entry in entries:
        if entry.obsolete or "fuzzy" in entry.flags:
            continue
        msgid = entry.msgid if entry.msgctxt is None else f"{entry.msgctxt}\x04{entry.msgid}"
        if msgid == "":
            # msgfmt leaves the date of the template out of the compiled header.
            lines = entry.msgstr[0].splitlines(keepends=True)
            catalog[msgid] = "".join(line for line in lines if not line.startswith("POT-Creation-Date:"))
        elif entry.msgid_plural is None:
            catalog[msgid] = entry.msgstr[0]
        else:
            catalog.update({(msgid, index): text for index, text in entry.msgstr.items()})
    return catalog


@pytest.fixture
def persian(settings):
    """Requests are answered in Persian: the test settings have no LocaleMiddleware, so LANGUAGE_CODE decides."""
    settings.LANGUAGE_CODE = "fa"


@pytest.mark.django_db
def test_sessions_page_in_persian(persian, engine, user):
    other = saved(engine, user)
    Session.objects.filter(pk=other.session_key).update(last_activity=timezone.now() - timedelta(minutes=3))
    client, current = sign_in()

    page = client.get("/sessions/").content.decode()

    assert '<html lang="fa" dir="rtl">' in page
    assert "<title>نشست‌های شما</title>" in page
    assert "<h1>نشست‌های شما</h1>" in page
    for heading in ("دستگاه", "مکان", "نشانی IP", "زمان ورود", "آخرین فعالیت", "عملیات"):
        assert f">{heading}<" in page
    assert '<span class="qsessions-current">این دستگاه</span>' in page
    assert "Chrome Mobile 118 روی Android 10" in page
    assert "3\xa0دقیقه پیش" in page
    assert '<button type="submit">خروج</button>' in page
    assert '<button type="submit">پایان دادن به این نشست</button>' in page
    assert '<button type="submit">پایان دادن به همهٔ نشست‌های دیگر</button>' in page
    assert "Your sessions" not in page
    assert "This device" not in page
    assert " ago" not in page

    response = client.post("/sessions/revoke-others/", follow=True)
    assert "به 1 نشست دیگر پایان داده شد." in response.content.decode()
    assert not Session.objects.filter(pk=other.session_key).exists()
    assert Session.objects.filter(pk=current.pk).exists()


@pytest.mark.django_db
def test_sessions_page_in_english_is_left_to_right(user):
    client, _ = sign_in()
    page = client.get("/sessions/").content.decode()
    assert '<html lang="en-us">' in page
    assert "<h1>Your sessions</h1>" in page


@pytest.mark.django_db
def test_api_errors_in_persian(persian, user):
    response = Client().get("/sessions/api/")
    assert response.status_code == 401
    assert response.json() == {"error": "احراز هویت لازم است."}
    client, _ = sign_in()
    assert client.delete("/sessions/api/unknown/").json() == {"error": "چنین نشستی وجود ندارد."}


def test_device_summary_in_persian():
    result = devices.parse(CHROME_ANDROID)
    with translation.override("fa"):
        assert devices.summarize(result) == "Chrome Mobile 118 روی Android 10"
        # Nothing to join, nothing to translate.
        assert devices.summarize(devices.parse("Mozilla/5.0 (X11; Linux x86_64)")) == "Linux"
    assert devices.summarize(result) == "Chrome Mobile 118 on Android 10"


@pytest.mark.django_db
def test_admin_in_persian(persian, engine, django_user_model):
    staff = django_user_model.objects.create_superuser(username="root", email="root@example.com", password="secret")
    client = Client()
    assert client.login(username="root", password="secret")
    key = saved(engine, staff).session_key

    listing = client.get(reverse("admin:qsessions_session_changelist")).content.decode()
    detail = client.get(reverse("admin:qsessions_session_change", args=[key])).content.decode()

    for title in ("نشست‌ها", "وضعیت", "مالک", "نشست‌های من", "زمان ایجاد", "زمان به‌روزرسانی", "تاریخ انقضا", "دستگاه"):
        assert title in listing
    for label in ("عامل کاربر", "کلید نشست", "داده‌های نشست", "مکان"):
        assert label in detail
    assert '<td class="field-device">K / Android 10 / Chrome Mobile 118.0.0.0</td>' in listing
    assert '<td class="field-created">' in listing
    assert CHROME_ANDROID in detail
    assert "10.1.2.3" in detail


def test_catalogue_is_complete():
    entries = parse_po(PO.read_text())
    header, messages = entries[0], entries[1:]
    assert header.msgid == ""
    assert "Language: fa\n" in header.msgstr[0]
    assert "Plural-Forms: nplurals=2; plural=(n > 1);\n" in header.msgstr[0]
    assert messages
    assert [entry.msgid for entry in messages if entry.obsolete] == []
    assert [entry.msgid for entry in entries if "fuzzy" in entry.flags] == []
    assert [entry.msgid for entry in messages if not all(entry.msgstr.values())] == []
    assert [entry.msgid for entry in messages if entry.msgid_plural and len(entry.msgstr) != 2] == []
    keys = [entry.key for entry in messages]
    assert len(keys) == len(set(keys))


def test_compiled_catalogue_matches_the_po():
    with MO.open("rb") as mo:
        shipped = gettext.GNUTranslations(mo)._catalog  # type: ignore[attr-defined]
    assert shipped == compiled(parse_po(PO.read_text())), "run scripts/messages to compile the catalogue"


@needs_gettext
def test_catalogue_holds_every_message_of_the_code(tmp_path):
    copy = tmp_path / "qsessions"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    # Without settings, makemessages configures its own: the copy needs nothing of the test project.
    env = {name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-m", "django", "makemessages", "--locale", "fa", "--add-location", "file"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "warning" not in (result.stdout + result.stderr).lower()

    committed = parse_po(PO.read_text())
    regenerated = parse_po((copy / PO.relative_to(PACKAGE)).read_text())
    assert [entry.msgid for entry in regenerated if entry.obsolete] == [], "messages no longer in the code"
    assert [entry.msgid for entry in regenerated if "fuzzy" in entry.flags] == []
    assert [entry.key for entry in regenerated] == [entry.key for entry in committed], "run scripts/messages"
    assert compiled(regenerated) == compiled(committed)


def test_every_shipped_language_is_documented():
    shipped = {path.name for path in (PACKAGE / "locale").iterdir() if (path / "LC_MESSAGES" / "django.po").exists()}
    documented = set(re.findall(r"^\| [^|]+ \| `(\w+)` \| `src/qsessions/locale/", DOCS.read_text(), re.M))
    assert "fa" in shipped
    assert documented == shipped
