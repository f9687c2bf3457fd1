"""A check that no response shows a session key: a key is a credential, pages and the API name sessions otherwise.

Test modules import ``no_session_key_in_responses``, an autouse fixture named ``seen``: every key created during the
test (every key in the test database was created during the test) is looked for in every response the test client
received.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpResponse
from django.test import Client

from qsessions.backends.base import QSessionStoreMixin


@dataclass
class Seen:
    keys: set[str] = field(default_factory=set)
    responses: list[HttpResponse] = field(default_factory=list)


def leaked_keys(responses: Iterable[HttpResponse], keys: set[str]) -> set[str]:
    """The keys found in a body, a header, or a cookie other than the session cookie (whose job is to hold one)."""
    found: set[str] = set()
    for response in responses:
        texts = [response.content.decode(errors="replace")]
        texts += [f"{name}: {value}" for name, value in response.headers.items()]
        texts += [str(morsel) for name, morsel in response.cookies.items() if name != settings.SESSION_COOKIE_NAME]
        found |= {key for key in keys if any(key in text for text in texts)}
    return found


@pytest.fixture(autouse=True, name="seen")
def no_session_key_in_responses(monkeypatch: pytest.MonkeyPatch) -> Iterator[Seen]:
    seen = Seen()
    request = Client.request

    def recording(new_key: Any) -> Any:
        def recording_new_key(self: SessionBase) -> str:
            key: str = new_key(self)
            seen.keys.add(key)
            return key

        return recording_new_key

    def recording_request(self: Client, **kwargs: Any) -> HttpResponse:
        response = request(self, **kwargs)
        seen.responses.append(response)
        return response

    # Django's stores draw their keys in SessionBase, ours in the mixin.
    for store in (SessionBase, QSessionStoreMixin):
        monkeypatch.setattr(store, "_get_new_session_key", recording(store._get_new_session_key))
    monkeypatch.setattr(Client, "request", recording_request)
    yield seen
    assert not leaked_keys(seen.responses, seen.keys)
