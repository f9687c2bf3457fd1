"""The client's device, from its user agent, through ``ua-parser``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

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
