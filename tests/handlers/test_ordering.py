"""InboxOrderingMiddleware: an event waits for the earlier pending events of its conversation
(only those), not for a dead worker's, and not past its bound."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from bot.migrate import upgrade_async
from handlers.middleware import Envelope
from handlers.ordering import InboxOrderingMiddleware
from handlers.types import Incoming
from storage import inbox_order
from storage import repositories as repo
from storage.db import SessionFactory, create_engine, session_factory, unit_of_work
from storage.models import InboxEvent, utcnow
from tests.fakes.responder import CollectingResponder


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[SessionFactory]:
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


def event(event_id: str, *, chat: str = "c1") -> Incoming:
    return Incoming(platform="test", event_id=event_id, chat_id=chat, user_id="u1", text="hi")


async def store(sessions: SessionFactory, incoming: Incoming) -> None:
    async with unit_of_work(sessions) as session:
        await repo.record_event(
            session,
            platform=incoming.platform,
            event_id=incoming.event_id,
            payload=dataclasses.asdict(incoming),
            conversation_key=inbox_order.conversation_key(*incoming.conversation_key),
        )


async def finish(sessions: SessionFactory, incoming: Incoming) -> None:
    async with unit_of_work(sessions) as session:
        await repo.mark_event(
            session, platform=incoming.platform, event_id=incoming.event_id, status="done"
        )


async def handled(ordering: InboxOrderingMiddleware, incoming: Incoming) -> str:
    async def end(envelope: Envelope) -> None:
        return None

    await ordering(Envelope(incoming, CollectingResponder()), end)
    return incoming.event_id


async def test_a_later_event_waits_for_the_earlier_one_of_its_conversation_only(
    sessions: SessionFactory,
) -> None:
    first, other, second = event("1"), event("2", chat="c2"), event("3")
    for incoming in (first, other, second):
        await store(sessions, incoming)
    ordering = InboxOrderingMiddleware(sessions, stale_after=60, poll=0.01, max_poll=0.01)

    waiting = asyncio.create_task(handled(ordering, second))
    assert await handled(ordering, other) == "2"  # another conversation: no wait
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await finish(sessions, first)
    assert await asyncio.wait_for(waiting, 5) == "3"


async def test_a_dead_workers_event_and_the_bound_do_not_hold_a_conversation_up(
    sessions: SessionFactory,
) -> None:
    dead, after_dead = event("0"), event("1")
    alive, later = event("2", chat="c2"), event("3", chat="c2")
    for incoming in (dead, after_dead, alive, later):
        await store(sessions, incoming)
    async with unit_of_work(sessions) as session:
        # No heartbeat for two minutes: its worker is gone and the resumer will take it.
        await session.execute(
            update(InboxEvent)
            .where(InboxEvent.event_id == dead.event_id)
            .values(updated_at=utcnow() - timedelta(minutes=2))
        )
    ordering = InboxOrderingMiddleware(sessions, stale_after=60, max_wait=0.2, poll=0.01)
    assert await asyncio.wait_for(handled(ordering, after_dead), 5) == "1"
    # "2" stays pending and alive: "3" waits for it no longer than max_wait.
    assert await asyncio.wait_for(handled(ordering, later), 5) == "3"
