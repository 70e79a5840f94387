"""The webhook answers 200 once an update is stored and queued, not before and not once it is
answered: Telegram's next update of the chat, to any replica, then queues behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from bot.compose import App
from storage.db import unit_of_work
from storage.models import InboxEvent
from tests.fakes.telegram_server import FakeTelegramServer, message_update
from tests.fakes.text import FakeTextGenerator
from tests.platforms.telegram_harness import TelegramHarness


@pytest.fixture
def fake_text() -> FakeTextGenerator:
    return FakeTextGenerator(answer="answered", delay=0.5)


@pytest.fixture
async def webhook(app: App) -> AsyncIterator[TelegramHarness]:
    server = FakeTelegramServer()
    await server.start()
    harness = TelegramHarness(server, webhook=True)
    await harness.start(app.dispatcher.dispatch, commands=app.router.commands)
    yield harness
    await harness.stop()
    await server.stop()


async def stored(app: App) -> list[str]:
    async with unit_of_work(app.sessions) as session:
        return list(await session.scalars(select(InboxEvent.event_id).order_by(InboxEvent.id)))


async def test_the_webhook_acknowledges_stored_updates_before_answering(
    app: App, webhook: TelegramHarness
) -> None:
    for update_id in (7001, 7002):
        update = {"update_id": update_id, **message_update(f"/gen question {update_id}")}
        assert await webhook.post(update) == 200
        assert (await stored(app))[-1] == str(update_id)
    # Both are in, in order, while the first is still being answered.
    assert webhook.server.calls_to("sendMessage") == []
    assert webhook.platform is not None
    await webhook.platform.wait_idle()
    assert len(webhook.server.calls_to("sendMessage")) == 2
