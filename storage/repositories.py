"""Repositories: keyword-only functions over an `AsyncSession`. They never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from storage import inbox_order
from storage.models import Base, Conversation, Feedback, InboxEvent, Message, User, utcnow


async def _insert_ignore(session: AsyncSession, model: type[Base], values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING; True when a row was written."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    result = await session.execute(insert(model).values(**values).on_conflict_do_nothing())
    return bool(getattr(result, "rowcount", 0))


# --- inbox -------------------------------------------------------------------------------


async def record_event(
    session: AsyncSession,
    *,
    platform: str,
    event_id: str,
    payload: dict[str, Any],
    conversation_key: str | None = None,
) -> bool:
    """Store an incoming event; False when this event id was seen before.

    With ``conversation_key`` the event joins its conversation's queue (storage/inbox_order.py).
    """
    if conversation_key is not None:
        await inbox_order.lock_conversation(session, key=conversation_key)
    return await _insert_ignore(
        session, InboxEvent, inbox_row(platform, event_id, payload, conversation_key)
    )


def inbox_row(
    platform: str, event_id: str, payload: dict[str, Any], conversation_key: str | None
) -> dict[str, Any]:
    """A new pending inbox event (also group-committed: storage/group_commit.py)."""
    now = utcnow()
    return {
        "platform": platform,
        "event_id": event_id,
        "conversation_key": conversation_key,
        "payload": payload,
        "status": "pending",
        "attempts": 1,
        "created_at": now,
        "updated_at": now,
    }


async def mark_event(
    session: AsyncSession, *, platform: str, event_id: str, status: str, error: str | None = None
) -> None:
    await session.execute(
        update(InboxEvent)
        .where(InboxEvent.platform == platform, InboxEvent.event_id == event_id)
        .values(status=status, error=error, updated_at=utcnow())
    )


async def pending_events(
    session: AsyncSession,
    *,
    platform: str | None = None,
    idle_since: datetime | None = None,
    limit: int = 1000,
) -> Sequence[InboxEvent]:
    """Pending events, oldest first; with ``idle_since``, only those nobody touched since."""
    query = select(InboxEvent).where(InboxEvent.status == "pending")
    if platform is not None:
        query = query.where(InboxEvent.platform == platform)
    if idle_since is not None:
        query = query.where(InboxEvent.updated_at < idle_since)
    result = await session.scalars(query.order_by(InboxEvent.id).limit(limit))
    return result.all()


async def claim_event(
    session: AsyncSession, *, platform: str, event_id: str, idle_since: datetime
) -> bool:
    """Take over an abandoned pending event; only one process can win the claim."""
    result = await session.execute(
        update(InboxEvent)
        .where(
            InboxEvent.platform == platform,
            InboxEvent.event_id == event_id,
            InboxEvent.status == "pending",
            InboxEvent.updated_at < idle_since,
        )
        .values(updated_at=utcnow(), attempts=InboxEvent.attempts + 1)
    )
    return bool(getattr(result, "rowcount", 0))


async def has_user_turn(session: AsyncSession, *, conversation_id: int, event_id: str) -> bool:
    found = await session.scalar(
        select(Message.id).where(
            Message.conversation_id == conversation_id,
            Message.event_id == event_id,
            Message.role == "user",
        )
    )
    return found is not None


# --- users and conversations -------------------------------------------------------------


async def get_or_create_user(
    session: AsyncSession,
    *,
    platform: str,
    external_id: str,
    display_name: str | None = None,
    language: str | None = None,
) -> User:
    # Read first: the user almost always exists, and a plain SELECT takes no write lock.
    query = select(User).where(User.platform == platform, User.external_id == external_id)
    user = await session.scalar(query)
    if user is None:
        await _insert_ignore(
            session,
            User,
            {
                "platform": platform,
                "external_id": external_id,
                "display_name": display_name,
                "language": language,
                "created_at": utcnow(),
            },
        )
        user = await session.scalar(query)
    assert user is not None
    if display_name and user.display_name != display_name:
        user.display_name = display_name
    return user


async def get_or_create_conversation(
    session: AsyncSession, *, platform: str, chat_id: str, thread_id: str = ""
) -> Conversation:
    query = select(Conversation).where(
        Conversation.platform == platform,
        Conversation.chat_id == chat_id,
        Conversation.thread_id == thread_id,
    )
    conversation = await session.scalar(query)
    if conversation is None:
        await _insert_ignore(
            session,
            Conversation,
            {
                "platform": platform,
                "chat_id": chat_id,
                "thread_id": thread_id,
                "epoch": 0,
                "created_at": utcnow(),
            },
        )
        conversation = await session.scalar(query)
    assert conversation is not None
    return conversation


async def start_new_context(session: AsyncSession, *, conversation: Conversation) -> None:
    """A new epoch: earlier turns stay stored but leave the context. Works on a detached
    ``conversation`` too, whose epoch follows."""
    await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation.id)
        .values(epoch=Conversation.epoch + 1)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(conversation, "epoch", conversation.epoch + 1)


# --- messages ----------------------------------------------------------------------------


async def add_message(
    session: AsyncSession,
    *,
    conversation: Conversation,
    role: str,
    text: str,
    kind: str = "chat",
    user_id: int | None = None,
    event_id: str | None = None,
    tokens: int | None = None,
) -> Message:
    message = Message(
        conversation_id=conversation.id,
        user_id=user_id,
        role=role,
        text=text,
        kind=kind,
        epoch=conversation.epoch,
        event_id=event_id,
        tokens=tokens,
        created_at=utcnow(),
    )
    session.add(message)
    await session.flush()
    return message


async def context_messages(
    session: AsyncSession, *, conversation: Conversation, limit: int = 200
) -> list[Message]:
    """The current context's chat turns, oldest first (at most the newest ``limit``)."""
    result = await session.scalars(
        select(Message)
        .where(
            Message.conversation_id == conversation.id,
            Message.epoch == conversation.epoch,
            Message.kind == "chat",
        )
        .order_by(Message.id.desc())
        .limit(limit)
    )
    return list(reversed(result.all()))


async def set_sentiment(
    session: AsyncSession, *, conversation_id: int, event_id: str, label: str
) -> None:
    """Label the user's turn of an event."""
    await session.execute(
        update(Message)
        .where(
            Message.conversation_id == conversation_id,
            Message.event_id == event_id,
            Message.role == "user",
        )
        .values(sentiment=label)
    )


async def count_messages(session: AsyncSession, *, conversation_id: int | None = None) -> int:
    query = select(func.count(Message.id))
    if conversation_id is not None:
        query = query.where(Message.conversation_id == conversation_id)
    return int(await session.scalar(query) or 0)


# --- feedback ----------------------------------------------------------------------------


async def set_feedback(
    session: AsyncSession, *, platform: str, event_id: str, user_id: int, score: int
) -> None:
    """Record a vote; a second vote by the same user on the same answer replaces the first."""
    existing = await session.scalar(
        select(Feedback).where(
            Feedback.platform == platform,
            Feedback.event_id == event_id,
            Feedback.user_id == user_id,
        )
    )
    if existing is None:
        session.add(
            Feedback(
                platform=platform,
                event_id=event_id,
                user_id=user_id,
                score=score,
                created_at=utcnow(),
            )
        )
    else:
        existing.score = score
    await session.flush()
