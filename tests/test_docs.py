"""The documentation names every setting ``conf.py`` reads and no other, and lists every page in its nav."""

import re
from pathlib import Path

from qsessions.conf import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"


def test_every_setting_is_documented_and_every_documented_setting_exists():
    defined = {f"QSESSIONS_{name}" for name, value in vars(Settings).items() if isinstance(value, property)}
    table = [line for line in CONFIGURATION.read_text().splitlines() if line.startswith("| `QSESSIONS_")]
    documented = {re.match(r"\| `(QSESSIONS_\w+)`", line).group(1) for line in table}  # type: ignore[union-attr]
    assert defined
    assert documented == defined


def _nav_pages() -> list[str]:
    """The pages mkdocs.yml's nav lists: its ``- Title: page.md`` lines, read without a YAML parser."""
    config = (ROOT / "mkdocs.yml").read_text()
    nav = re.search(r"^nav:\n((?:[ \t]+.*\n|\n)*)", config, re.MULTILINE)
    assert nav, "mkdocs.yml has no nav"
    return re.findall(r"^\s*-\s[^:\n]+:\s*(\S+\.md)\s*$", nav.group(1), re.MULTILINE)


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    listed = _nav_pages()
    pages = sorted(str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md"))
    assert len(listed) == len(set(listed)), "a page is listed twice in the nav"
    assert sorted(listed) == pages
