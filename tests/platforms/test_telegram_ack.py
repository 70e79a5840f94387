"""The webhook answers 200 once an update is stored and queued, not before and not once it is
answered: Telegram's next update of the chat, to any replica, then queues behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from bot.compose import App
from handlers.middleware import NOT_SAVED
from storage.db import unit_of_work
from storage.models import InboxEvent
from tests.fakes.inbox import FlakyInbox
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


async def test_an_update_the_store_refuses_is_refused_so_telegram_sends_it_again(
    app: App, webhook: TelegramHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky = FlakyInbox(app, monkeypatch, failures=None)
    update = {"update_id": 7101, **message_update("/gen hello")}
    assert await webhook.post(update) == 503
    assert flaky.calls == 3  # the first try and two more
    assert webhook.platform is not None
    await webhook.platform.wait_idle()
    # No apology: Telegram's next delivery is answered once the database is back.
    assert webhook.server.calls_to("sendMessage") == []
    flaky.failures = 0
    assert await webhook.post(update) == 200
    await webhook.platform.wait_idle()
    assert [c.params["text"] for c in webhook.server.calls_to("sendMessage")] == ["answered"]
    assert await stored(app) == ["7101"]


async def test_a_briefly_locked_store_only_delays_the_update(
    app: App, webhook: TelegramHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    FlakyInbox(app, monkeypatch, failures=2)
    assert await webhook.post({"update_id": 7201, **message_update("/gen hello")}) == 200
    assert webhook.platform is not None
    await webhook.platform.wait_idle()
    assert [c.params["text"] for c in webhook.server.calls_to("sendMessage")] == ["answered"]


async def test_a_polled_update_the_store_refuses_gets_an_apology(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # getUpdates has moved past it, so it cannot come again: the user must hear to resend.
    server = FakeTelegramServer()
    await server.start()
    polling = TelegramHarness(server)
    await polling.start(app.dispatcher.dispatch, commands=app.router.commands)
    try:
        FlakyInbox(app, monkeypatch, failures=None)
        await polling.deliver(message_update("/gen hello"))
        assert [c.params["text"] for c in server.calls_to("sendMessage")] == [NOT_SAVED]
    finally:
        await polling.stop()
        await server.stop()
