"""Placeholder: being written (location_info / describe)."""

from __future__ import annotations

from typing import Any


def location_info(ip: str | None) -> dict[str, Any] | None:
    return None


def describe(info: dict[str, Any] | None) -> str | None:
    return None
