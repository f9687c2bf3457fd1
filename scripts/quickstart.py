"""Runs the README's Quick start as written, in a project that ``django-admin startproject`` just made.

    python scripts/quickstart.py README.md PROJECT_DIR

Appends the README's ``# settings.py`` block to the project's settings and its ``# urls.py`` block to its URLconf,
verbatim, then migrates, signs a user in through Django's test client, and checks that the sessions page and its JSON
API answer with that session. It fails if the README and the installed package disagree. ``scripts/package-check``
runs it with the virtualenv that holds the built wheel.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SIGNED_IN = """
import json
from django.contrib.auth import get_user_model
from django.test import Client
from django.test.utils import setup_test_environment

setup_test_environment()
get_user_model().objects.create_user("quickstart", password="quickstart-secret")
client = Client(HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0")
assert client.login(username="quickstart", password="quickstart-secret"), "the sign-in failed"
# login() makes the session outside a request: the first request through the middleware records the client, once
# it has answered.
listed = client.get("/sessions/api/")
assert listed.status_code == 200, f"the JSON API answered {listed.status_code}"
assert [session["current"] for session in listed.json()["sessions"]] == [True], listed.json()
page = client.get("/sessions/")
assert page.status_code == 200, f"the sessions page answered {page.status_code}"
assert "Firefox" in page.content.decode(), "the sessions page does not show the session's browser"
session = client.get("/sessions/api/").json()["sessions"][0]
assert session["browser"].startswith("Firefox"), session
print("signed in; the sessions page and the JSON API list the session:", json.dumps(session))
"""


def _blocks(readme: str) -> dict[str, str]:
    """The Quick start's Python blocks, by the file their first line names (``# settings.py: ...``)."""
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = {}
    for block in re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL):
        named = re.match(r"# (\w+\.py)", block)
        if named:
            blocks[named.group(1)] = block
    missing = {"settings.py", "urls.py"} - blocks.keys()
    if missing:
        sys.exit(f"the README's Quick start has no block for {', '.join(sorted(missing))}")
    return blocks


def main(readme: Path, project: Path) -> None:
    package = project / project.name
    for name, block in _blocks(readme.read_text()).items():
        with (package / name).open("a") as file:
            file.write("\n" + block)
        print(f"appended the README's {name} block to {package / name}")
    manage = [sys.executable, "manage.py"]
    for command in (["check", "--fail-level", "WARNING"], ["migrate", "--no-input", "--verbosity", "0"]):
        subprocess.run([*manage, *command], cwd=project, check=True)
    subprocess.run([*manage, "shell", "--verbosity", "0", "-c", SIGNED_IN], cwd=project, check=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
