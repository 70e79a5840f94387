"""Hand-offs to a person: recorded by the "Ask a person" button, delivered to the support
desk, answered or closed by a person; an answer is sent into the chat by the bot. Keyword-only
functions over an `AsyncSession`; no commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from storage.models import Conversation, Handoff, Message, User, utcnow
from storage.repositories import _insert_ignore, add_message

# How much of an event id a hand-off button carries: Telegram allows 64 bytes of callback data.
BUTTON_EVENT_ID = 56


@dataclass(frozen=True, slots=True)
class HandoffView:
    """A hand-off with where it came from: what the desk and `switchboard handoffs` show."""

    id: int
    created_at: datetime
    platform: str
    chat_id: str
    thread_id: str
    user_id: str
    user_name: str | None
    question: str
    transcript: list[dict[str, str]]
    attempts: int
    delivered_at: datetime | None
    closed_at: datetime | None
    error: str | None
    answer: str | None = None
    answered_by: str | None = None
    answer_attempts: int = 0
    answer_sent_at: datetime | None = None
    answer_error: str | None = None
    answer_due_at: datetime | None = None  # None with an unsent answer: sending was stopped


async def asked_question(
    session: AsyncSession, *, conversation_id: int, user_id: int, event_id: str
) -> str | None:
    """The words ``user_id`` sent in the event ``event_id`` (as a button carries it: the id, cut
    to BUTTON_EVENT_ID characters); None when there is no such message of theirs: the button
    was forged, or pressed by someone other than the asker, or the message was forgotten."""
    match = (
        Message.event_id.startswith(event_id, autoescape=True)
        if len(event_id) == BUTTON_EVENT_ID
        else Message.event_id == event_id
    )
    return await session.scalar(
        select(Message.text)
        .where(
            Message.conversation_id == conversation_id,
            Message.user_id == user_id,
            Message.role == "user",
            match,
        )
        .order_by(Message.id)
        .limit(1)
    )


async def request_handoff(
    session: AsyncSession,
    *,
    conversation_id: int,
    user_id: int,
    event_id: str,
    question: str,
    transcript: Sequence[dict[str, str]],
) -> bool:
    """Record a hand-off; False when this question was handed off already."""
    now = utcnow()
    return await _insert_ignore(
        session,
        Handoff,
        {
            "conversation_id": conversation_id,
            "user_id": user_id,
            "event_id": event_id,
            "question": question,
            "transcript": list(transcript),
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        },
    )


def _views() -> Select[Handoff, Conversation, User]:
    return (
        select(Handoff, Conversation, User)
        .join(Conversation, Conversation.id == Handoff.conversation_id)
        .join(User, User.id == Handoff.user_id)
    )


async def _fetch(
    session: AsyncSession, query: Select[Handoff, Conversation, User]
) -> list[HandoffView]:
    return [_view(*row) for row in (await session.execute(query)).tuples()]


def _view(handoff: Handoff, conversation: Conversation, user: User) -> HandoffView:
    return HandoffView(
        id=handoff.id,
        created_at=handoff.created_at,
        platform=conversation.platform,
        chat_id=conversation.chat_id,
        thread_id=conversation.thread_id,
        user_id=user.external_id,
        user_name=user.display_name,
        question=handoff.question,
        transcript=list(handoff.transcript),
        attempts=handoff.attempts,
        delivered_at=handoff.delivered_at,
        closed_at=handoff.closed_at,
        error=handoff.error,
        answer=handoff.answer,
        answered_by=handoff.answered_by,
        answer_attempts=handoff.answer_attempts,
        answer_sent_at=handoff.answer_sent_at,
        answer_error=handoff.answer_error,
        answer_due_at=handoff.answer_due_at,
    )


async def claim_due(
    session: AsyncSession, *, lease: timedelta, limit: int = 20
) -> list[HandoffView]:
    """Open, undelivered hand-offs whose next attempt is due, oldest first, claimed for
    ``lease``: their next attempt moves past it, so another replica (or this one, after a
    crash) takes them only once the lease is over. Commit the claim before sending."""
    now = utcnow()
    due = (
        select(Handoff.id)
        .where(
            Handoff.delivered_at.is_(None),
            Handoff.closed_at.is_(None),
            Handoff.next_attempt_at <= now,
        )
        .order_by(Handoff.next_attempt_at, Handoff.id)
        .limit(limit)
    )
    return await _claim(session, Handoff.next_attempt_at, due, now=now, lease=lease)


async def claim_answers(
    session: AsyncSession, *, platforms: Sequence[str], lease: timedelta, limit: int = 20
) -> list[HandoffView]:
    """Answers due to be sent into chats of ``platforms`` (those this replica runs), claimed
    for ``lease`` as `claim_due` claims hand-offs."""
    now = utcnow()
    due = (
        select(Handoff.id)
        .join(Conversation, Conversation.id == Handoff.conversation_id)
        .where(Handoff.answer_due_at <= now, Conversation.platform.in_(list(platforms)))
        .order_by(Handoff.answer_due_at, Handoff.id)
        .limit(limit)
    )
    return await _claim(session, Handoff.answer_due_at, due, now=now, lease=lease)


async def _claim(
    session: AsyncSession,
    due_at: InstrumentedAttribute[Any],
    due: Select[int],
    *,
    now: datetime,
    lease: timedelta,
) -> list[HandoffView]:
    # The condition is checked again on the row itself: of two replicas claiming together,
    # the second finds it claimed (PostgreSQL re-reads a row updated under it; SQLite has
    # one writer at a time).
    claimed = await session.scalars(
        update(Handoff)
        .where(Handoff.id.in_(due), due_at <= now)
        .values({due_at: now + lease})
        .returning(Handoff.id)
    )
    ids = list(claimed.all())
    if not ids:
        return []
    return await _fetch(session, _views().where(Handoff.id.in_(ids)).order_by(Handoff.id))


async def mark_delivered(session: AsyncSession, *, handoff_id: int) -> None:
    await session.execute(
        update(Handoff)
        .where(Handoff.id == handoff_id)
        .values(delivered_at=utcnow(), attempts=Handoff.attempts + 1, error=None)
    )


async def mark_failed(
    session: AsyncSession, *, handoff_id: int, attempts: int, error: str, retry_in: timedelta
) -> None:
    await session.execute(
        update(Handoff)
        .where(Handoff.id == handoff_id)
        .values(attempts=attempts, error=error[:1000], next_attempt_at=utcnow() + retry_in)
    )


async def list_handoffs(
    session: AsyncSession, *, include_closed: bool = False
) -> list[HandoffView]:
    """Open hand-offs and those whose answer is still to be sent; with ``include_closed``,
    every one."""
    query = _views().order_by(Handoff.id)
    if not include_closed:
        query = query.where(or_(Handoff.closed_at.is_(None), Handoff.answer_due_at.is_not(None)))
    return await _fetch(session, query)


async def get_handoff(session: AsyncSession, *, handoff_id: int) -> HandoffView | None:
    found = await _fetch(session, _views().where(Handoff.id == handoff_id))
    return found[0] if found else None


async def answer_handoff(
    session: AsyncSession, *, handoff_id: int, text: str, by: str | None
) -> bool:
    """Keep a person's answer to send into the chat (and close the hand-off); False when there
    is no such hand-off or it has an answer already."""
    now = utcnow()
    result = await session.execute(
        update(Handoff)
        .where(Handoff.id == handoff_id, Handoff.answer.is_(None))
        .values(
            answer=text,
            answered_by=by,
            answer_due_at=now,
            closed_at=func.coalesce(Handoff.closed_at, now),
        )
    )
    return bool(getattr(result, "rowcount", 0))


def answer_event_id(handoff_id: int) -> str:
    """The event id of the turn a sent answer becomes (`mark_answer_sent`)."""
    return f"handoff-answer:{handoff_id}"


async def mark_answer_sent(session: AsyncSession, *, handoff_id: int, shown: str) -> None:
    """The answer reached the chat as ``shown``: it joins the conversation as the assistant's
    turn, so the bot's next answers know what the person said."""
    handoff = await session.get(Handoff, handoff_id)
    if handoff is None:
        return  # forgotten (/forget) while on its way: its turn would quote the asker again
    handoff.answer_sent_at = utcnow()
    handoff.answer_due_at = None
    handoff.answer_attempts += 1
    handoff.answer_error = None
    await add_message(
        session,
        conversation=await session.get_one(Conversation, handoff.conversation_id),
        role="assistant",
        text=shown,
        event_id=answer_event_id(handoff_id),
    )


async def mark_answer_failed(
    session: AsyncSession, *, handoff_id: int, attempts: int, error: str, retry_in: timedelta
) -> None:
    await session.execute(
        update(Handoff)
        .where(Handoff.id == handoff_id)
        .values(
            answer_attempts=attempts,
            answer_error=error[:1000],
            answer_due_at=utcnow() + retry_in,
        )
    )


async def close_handoff(session: AsyncSession, *, handoff_id: int) -> bool:
    """Mark a hand-off answered some other way: it is not sent to the desk any more, and an
    answer still on its way to the chat (one that keeps failing) is not sent either. False
    when there is nothing left to close."""
    result = await session.execute(
        update(Handoff)
        .where(
            Handoff.id == handoff_id,
            or_(Handoff.closed_at.is_(None), Handoff.answer_due_at.is_not(None)),
        )
        .values(closed_at=func.coalesce(Handoff.closed_at, utcnow()), answer_due_at=None)
    )
    return bool(getattr(result, "rowcount", 0))


async def forget_asker(session: AsyncSession, *, user_id: int) -> None:
    """Delete the hand-offs that hold a user's words, and the turns their sent answers became
    (an answer quotes the question): the user's own, and, in a group chat, those another member
    asked for under the user's question. Run it before the user's turns are deleted: they tell
    whose question a hand-off holds."""
    # Whose words `asked_question` took: the first user turn the button's event id prefixes.
    asker = (
        select(Message.user_id)
        .where(
            Message.conversation_id == Handoff.conversation_id,
            Message.role == "user",
            func.substr(Message.event_id, 1, func.length(Handoff.event_id)) == Handoff.event_id,
        )
        .order_by(Message.id)
        .limit(1)
        .correlate(Handoff)
        .scalar_subquery()
    )
    conversations = select(Message.conversation_id).where(Message.user_id == user_id)
    ids = list(
        await session.scalars(
            select(Handoff.id).where(
                or_(
                    Handoff.user_id == user_id,
                    and_(Handoff.conversation_id.in_(conversations), asker == user_id),
                )
            )
        )
    )
    if not ids:
        return
    answers = [answer_event_id(handoff_id) for handoff_id in ids]
    await session.execute(delete(Message).where(Message.event_id.in_(answers)))
    await session.execute(delete(Handoff).where(Handoff.id.in_(ids)))
