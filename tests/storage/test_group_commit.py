"""Group commit and the per-message store path, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.migrate import upgrade_async
from storage import repositories as repo
from storage import turns
from storage import usage as usage_repo
from storage.db import create_engine, session_factory, unit_of_work
from storage.group_commit import GroupCommit, Write
from storage.models import InboxEvent, Message, Usage, User


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def count(engine: AsyncEngine, column: object, *where: object) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count(column)).where(*where)) or 0)


async def test_concurrent_events_share_transactions_and_dedupe(engine: AsyncEngine) -> None:
    commits = GroupCommit(engine)
    ids = [str(i) for i in range(60)] * 2  # every event twice, some in the same batch

    async def record(event_id: str) -> bool:
        return await commits.record_event(
            platform="telegram",
            event_id=event_id,
            payload={"text": event_id},
            conversation_key=f"chat-{int(event_id) % 7}",
        )

    fresh = await asyncio.gather(*(record(i) for i in ids))
    assert sum(fresh) == 60
    assert {i for i, new in zip(ids, fresh, strict=True) if new} == {str(i) for i in range(60)}
    assert await count(engine, InboxEvent.id) == 60
    # Arrival order is inbox order: within each conversation the ids rise with the event ids.
    async with engine.connect() as connection:
        rows = (await connection.execute(select(InboxEvent.event_id).order_by(InboxEvent.id))).all()
    assert [int(r[0]) for r in rows] == list(range(60))


async def test_each_message_writes_stay_atomic_when_one_fails(engine: AsyncEngine) -> None:
    commits = GroupCommit(engine)
    sessions = session_factory(engine)
    async with unit_of_work(sessions) as session:
        conversation = await repo.get_or_create_conversation(
            session, platform="slack", chat_id="C1"
        )

    def turn(text: str, conversation_id: int) -> Write:
        write = turns.add_message(conversation=conversation, role="user", text=text, kind="chat")
        return Write(write.statement, {**write.params, "conversation_id": conversation_id})

    good = [
        [turn(f"good {i}", conversation.id), turn(f"also {i}", conversation.id)] for i in range(5)
    ]
    # A turn of a conversation that does not exist breaks the foreign key: only its own
    # message (both of its rows) fails.
    bad = [turn("orphan", 999_999), turn("its sibling", conversation.id)]
    results = await asyncio.gather(
        *(commits.commit(w) for w in [*good[:3], bad, *good[3:]]), return_exceptions=True
    )
    assert [isinstance(r, Exception) for r in results] == [False] * 3 + [True] + [False] * 2
    assert await count(engine, Message.id) == 10
    assert await count(engine, Message.id, Message.text == "its sibling") == 0


async def test_known_user_path_matches_the_repositories(engine: AsyncEngine) -> None:
    commits, states = GroupCommit(engine), turns.States(engine)
    where = {"platform": "telegram", "external_id": "7", "chat_id": "-100", "thread_id": "5"}
    assert await states.load(**where) is None
    await commits.commit(
        [
            turns.ensure_user(
                engine, platform="telegram", external_id="7", display_name="Ada", language="en"
            ),
            turns.ensure_conversation(engine, platform="telegram", chat_id="-100", thread_id="5"),
        ]
    )
    state = await states.load(**where)
    assert state is not None and state.history == []
    assert (state.user.display_name, state.user.language, state.conversation.epoch) == (
        "Ada",
        "en",
        0,
    )
    # A new name is kept, a missing one erases nothing, the language is set once.
    for name, language in (("Ada L.", "de"), (None, None)):
        await commits.commit(
            [
                turns.ensure_user(
                    engine,
                    platform="telegram",
                    external_id="7",
                    display_name=name,
                    language=language,
                )
            ]
        )
    state = await states.load(**where)
    assert state is not None
    assert (state.user.display_name, state.user.language) == ("Ada L.", "en")
    assert await count(engine, User.id) == 1

    conversation = state.conversation
    await commits.commit(
        [
            turns.add_message(
                conversation=conversation, role="user", text="hi", kind="chat", event_id="e1"
            ),
            turns.add_message(
                conversation=conversation,
                role="assistant",
                text="hello",
                kind="chat",
                event_id="e1",
            ),
            turns.add_message(
                conversation=conversation, role="user", text="/help", kind="command", event_id="e2"
            ),
        ]
    )
    state = await states.load(**where)
    assert state is not None
    assert [(t.role, t.text) for t in state.history] == [("user", "hi"), ("assistant", "hello")]
    # The repositories see the same context, and /reset works on the detached conversation.
    sessions = session_factory(engine)
    async with unit_of_work(sessions) as session:
        stored = await repo.context_messages(session, conversation=conversation)
        assert [m.text for m in stored] == ["hi", "hello"]
        await repo.start_new_context(session, conversation=conversation)
    assert conversation.epoch == 1
    state = await states.load(**where)
    assert state is not None and state.history == [] and state.conversation.epoch == 1


async def test_usage_counts_add_up_across_batches(engine: AsyncEngine) -> None:
    commits = GroupCommit(engine)
    await commits.commit(
        [
            turns.ensure_user(
                engine, platform="slack", external_id="U1", display_name=None, language=None
            )
        ]
    )
    async with engine.connect() as connection:
        user_id = await connection.scalar(select(User.id))
    assert user_id is not None
    day = date(2026, 11, 29)
    await asyncio.gather(
        *(
            commits.commit(
                [turns.add_usage(engine, user_id=user_id, day=day, messages=1, tokens=3, images=0)]
            )
            for _ in range(25)
        )
    )
    async with unit_of_work(session_factory(engine)) as session:
        used = await usage_repo.usage_of(session, platform="slack", external_id="U1", day=day)
    assert used is not None and (used.messages, used.tokens, used.images) == (25, 75, 0)
    assert await count(engine, Usage.id) == 1


async def test_marking_an_event_done(engine: AsyncEngine) -> None:
    commits = GroupCommit(engine)
    assert await commits.record_event(platform="slack", event_id="Ev1", payload={})
    await commits.commit([turns.mark_event(platform="slack", event_id="Ev1", status="done")])
    async with unit_of_work(session_factory(engine)) as session:
        assert await repo.pending_events(session) == []
    assert await count(engine, InboxEvent.id, InboxEvent.status == "done") == 1


async def test_states_of_messages_arriving_together_come_from_one_query(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(turns, "HISTORY_LIMIT", 3)
    commits, states = GroupCommit(engine), turns.States(engine)
    setup: list[Write] = []
    for chat in ("A", "B"):
        setup.append(
            turns.ensure_conversation(engine, platform="slack", chat_id=chat, thread_id="")
        )
    for person in ("U1", "U2"):
        setup.append(
            turns.ensure_user(
                engine, platform="slack", external_id=person, display_name=person, language=None
            )
        )
    await commits.commit(setup)
    a = await states.load(platform="slack", external_id="U1", chat_id="A", thread_id="")
    b = await states.load(platform="slack", external_id="U1", chat_id="B", thread_id="")
    assert a is not None and b is not None
    await commits.commit(
        [
            turns.add_message(conversation=a.conversation, role="user", text=f"a{i}", kind="chat")
            for i in range(5)
        ]
        + [turns.add_message(conversation=b.conversation, role="user", text="b0", kind="chat")]
    )
    asked = [
        ("U1", "A"),
        ("U2", "A"),  # two people in one chat
        ("U1", "B"),
        ("U3", "A"),  # nobody yet
        ("U1", "C"),  # no such chat yet
    ]
    loaded = await asyncio.gather(
        *(
            states.load(platform="slack", external_id=who, chat_id=chat, thread_id="")
            for who, chat in asked
        )
    )
    seen = [
        None
        if s is None
        else (s.user.external_id, s.conversation.chat_id, [t.text for t in s.history])
        for s in loaded
    ]
    assert seen == [
        ("U1", "A", ["a2", "a3", "a4"]),  # the newest three, oldest first
        ("U2", "A", ["a2", "a3", "a4"]),
        ("U1", "B", ["b0"]),
        None,
        None,
    ]
