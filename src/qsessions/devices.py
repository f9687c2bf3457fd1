"""The client's device, from its user agent, through ``ua-parser``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

from django.utils.translation import gettext

if TYPE_CHECKING:
    from ua_parser import Result

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _parser() -> Callable[[str], Result] | None:
    """``ua_parser.parse``: its default parser uses the fastest installed resolver behind an LRU cache."""
    try:
        from ua_parser import parse
    except ImportError:
        logger.warning("ua-parser is not installed: sessions will not describe their devices.")
        return None
    return parse


def parse(user_agent: str | None) -> Result | None:
    if not user_agent:
        return None
    parser = _parser()
    return parser(user_agent) if parser is not None else None


def _named(family: str, *version: str | None) -> str:
    """``family`` followed by the version's parts up to the first missing one (``10, None, 3`` gives ``10``)."""
    parts: list[str] = []
    for part in version:
        if part is None:
            break
        parts.append(part)
    return f"{family} {'.'.join(parts)}".rstrip()


def describe(result: Result | None) -> str:
    """``"Device / OS version / Browser version"``, the format the ``device`` property has always had."""
    if result is None:
        return ""
    device = result.device.family if result.device else "Other"
    os, agent = result.os, result.user_agent
    os_name = _named(os.family, os.major, os.minor, os.patch, os.patch_minor) if os else "Other"
    browser = _named(agent.family, agent.major, agent.minor, agent.patch, agent.patch_minor) if agent else "Other"
    return f"{device} / {os_name} / {browser}"


def browser(result: Result | None) -> str:
    """The browser and its major version, e.g. ``"Chrome Mobile 118"``; ``""`` when unknown."""
    agent = result.user_agent if result is not None else None
    if agent is None or agent.family == "Other":
        return ""
    return _named(agent.family, agent.major)


def operating_system(result: Result | None) -> str:
    """The OS and its version to the minor number, e.g. ``"Android 10"`` or ``"Mac OS X 10.15"``; ``""`` if unknown."""
    os = result.os if result is not None else None
    if os is None or os.family == "Other":
        return ""
    return _named(os.family, os.major, os.minor)


def summarize(result: Result | None) -> str:
    """What a person recognises their device by, e.g. ``"Chrome Mobile 118 on Android 10"``; ``""`` when unknown.

    Unlike ``describe()``, whose format is frozen, this leaves out what means nothing to a reader (patch levels,
    "Other", model codes such as "K") and is translated.
    """
    browser_name, os_name = browser(result), operating_system(result)
    if browser_name and os_name:
        # Translators: a browser and the operating system it runs on, e.g. "Chrome Mobile 118 on Android 10".
        return gettext("%(browser)s on %(os)s") % {"browser": browser_name, "os": os_name}
    return browser_name or os_name
