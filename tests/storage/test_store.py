"""The store on SQLite and PostgreSQL: migrations, inbox dedupe, get-or-create under races."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator
from multiprocessing.queues import Queue

import pytest
from sqlalchemy import inspect, select

from bot.migrate import downgrade_async, upgrade, upgrade_async
from storage import repositories as repo
from storage.db import SessionFactory, create_engine, session_factory, unit_of_work
from storage.models import Message, User


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[SessionFactory]:
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def test_migrations_go_up_down_and_up_again(database_url: str) -> None:
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    async with engine.connect() as connection:
        tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert {"users", "conversations", "messages", "inbox", "feedback"} <= tables
    await engine.dispose()
    await downgrade_async(database_url, "base")
    await upgrade_async(database_url)


def _migrate(url: str, results: Queue[str]) -> None:
    try:
        upgrade(url)
        results.put("ok")
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")


async def test_replicas_starting_together_migrate_one_at_a_time(database_url: str) -> None:
    # Every `switchboard run` migrates first; on a fresh PostgreSQL database two at once both
    # created the schema, and one failed. (SQLite is one process's store: nothing to race.)
    if not database_url.startswith("postgresql"):
        pytest.skip("replicas share PostgreSQL")
    spawn = multiprocessing.get_context("spawn")
    results: Queue[str] = spawn.Queue()
    replicas = [spawn.Process(target=_migrate, args=(database_url, results)) for _ in range(3)]
    for replica in replicas:
        replica.start()
    await asyncio.to_thread(lambda: [r.join(120) for r in replicas])
    assert sorted(results.get(timeout=5) for _ in replicas) == ["ok"] * 3


async def test_an_event_id_is_recorded_once_even_when_racing(sessions: SessionFactory) -> None:
    async def record() -> bool:
        async with unit_of_work(sessions) as session:
            return await repo.record_event(
                session, platform="telegram", event_id="42", payload={"text": "hi"}
            )

    results = await asyncio.gather(*(record() for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    async with unit_of_work(sessions) as session:
        pending = await repo.pending_events(session)
        assert [(e.event_id, e.payload) for e in pending] == [("42", {"text": "hi"})]
        await repo.mark_event(session, platform="telegram", event_id="42", status="done")
    async with unit_of_work(sessions) as session:
        assert await repo.pending_events(session) == []


async def test_get_or_create_user_is_safe_under_concurrency(sessions: SessionFactory) -> None:
    async def resolve() -> int:
        async with unit_of_work(sessions) as session:
            user = await repo.get_or_create_user(
                session, platform="slack", external_id="U1", display_name="Ada"
            )
            return user.id

    ids = await asyncio.gather(*(resolve() for _ in range(8)))
    assert len(set(ids)) == 1
    async with unit_of_work(sessions) as session:
        assert len((await session.scalars(select(User))).all()) == 1


async def test_context_is_per_epoch_and_keeps_order(sessions: SessionFactory) -> None:
    async with unit_of_work(sessions) as session:
        conversation = await repo.get_or_create_conversation(
            session, platform="slack", chat_id="C1", thread_id="1700000000.1"
        )
        for index in range(5):
            role = "user" if index % 2 == 0 else "assistant"
            await repo.add_message(session, conversation=conversation, role=role, text=f"m{index}")
        await repo.add_message(
            session, conversation=conversation, role="user", text="/help", kind="command"
        )
        texts = [m.text for m in await repo.context_messages(session, conversation=conversation)]
        assert texts == ["m0", "m1", "m2", "m3", "m4"]
        await repo.start_new_context(session, conversation=conversation)
        assert await repo.context_messages(session, conversation=conversation) == []
        assert await repo.count_messages(session, conversation_id=conversation.id) == 6
        assert len((await session.scalars(select(Message))).all()) == 6
