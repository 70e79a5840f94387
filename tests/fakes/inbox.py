"""A store whose inbox refuses writes, as a locked SQLite file or a PostgreSQL fail-over does."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from bot.compose import App


class FlakyInbox:
    """``record_event`` of the app's group commit, failing like a locked database ``failures``
    times (or always) before it lets writes through."""

    def __init__(self, app: App, monkeypatch: pytest.MonkeyPatch, failures: int | None) -> None:
        assert app.commits is not None
        self.real = app.commits.record_event
        self.failures = failures
        self.calls = 0
        monkeypatch.setattr(app.commits, "record_event", self)
        monkeypatch.setattr("handlers.middleware.STORE_RETRIES", (0.01, 0.01))

    async def __call__(self, **kwargs: Any) -> bool:
        self.calls += 1
        if self.failures is None or self.calls <= self.failures:
            raise OperationalError("INSERT INTO inbox", {}, Exception("database is locked"))
        return await self.real(**kwargs)
