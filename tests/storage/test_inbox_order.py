"""On PostgreSQL, a conversation's inbox rows commit in id order: storing one waits for a
concurrent insert of the same conversation, not for another conversation's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.migrate import upgrade_async
from storage import inbox_order
from storage import repositories as repo
from storage.db import SessionFactory, create_engine, session_factory, unit_of_work


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[SessionFactory]:
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def store(sessions: SessionFactory, event_id: str, *, chat: str) -> None:
    async with unit_of_work(sessions) as session:
        await repo.record_event(
            session,
            platform="test",
            event_id=event_id,
            payload={},
            conversation_key=inbox_order.conversation_key("test", chat, ""),
        )


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_inserts_of_one_conversation_are_serialised(sessions: SessionFactory) -> None:
    async with unit_of_work(sessions) as session:
        await repo.record_event(
            session,
            platform="test",
            event_id="1",
            payload={},
            conversation_key=inbox_order.conversation_key("test", "c1", ""),
        )
        same = asyncio.create_task(store(sessions, "2", chat="c1"))
        await store(sessions, "3", chat="c2")  # another conversation goes ahead
        await asyncio.sleep(0.2)
        assert not same.done()  # its id would be larger, so it must commit after "1"
    await asyncio.wait_for(same, 5)


def test_keys_are_unambiguous_and_lock_ids_fit_postgresql() -> None:
    assert inbox_order.conversation_key("a", "b:c", "") != inbox_order.conversation_key(
        "a", "b", "c"
    )
    assert -(2**31) <= inbox_order.lock_id("x" * 600) < 2**31
