"""Usage statistics and the right to be forgotten (the counters themselves are group-committed
by storage/turns.py `add_usage`). Functions never commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import handoffs
from storage.models import InboxEvent, Message, Usage, User


@dataclass(frozen=True, slots=True)
class Stats:
    users: int
    messages: int
    sentiment: dict[str, int]
    today_messages: int
    today_tokens: int
    today_images: int


async def stats(session: AsyncSession, *, day: date) -> Stats:
    users = await session.scalar(select(func.count(User.id))) or 0
    messages = await session.scalar(select(func.count(Message.id))) or 0
    mix = await session.execute(
        select(Message.sentiment, func.count(Message.id))
        .where(Message.role == "user", Message.sentiment.is_not(None))
        .group_by(Message.sentiment)
    )
    today = (
        await session.execute(
            select(
                func.coalesce(func.sum(Usage.messages), 0),
                func.coalesce(func.sum(Usage.tokens), 0),
                func.coalesce(func.sum(Usage.images), 0),
            ).where(Usage.day == day.isoformat())
        )
    ).one()
    return Stats(
        users=int(users),
        messages=int(messages),
        sentiment={str(label): int(count) for label, count in mix.all()},
        today_messages=int(today[0]),
        today_tokens=int(today[1]),
        today_images=int(today[2]),
    )


async def forget_user(session: AsyncSession, *, user_id: int, event_id: str) -> None:
    """Delete everything stored about a user: their turns and the answers to them, the
    hand-offs holding their words, and what their inbox events carry; the user row's cascade
    removes purchases, feedback and usage. ``event_id`` is the event asking for it."""
    who = (
        await session.execute(select(User.platform, User.external_id).where(User.id == user_id))
    ).one_or_none()
    if who is None:
        return
    await handoffs.forget_asker(session, user_id=user_id)
    event_ids = select(Message.event_id).where(
        Message.user_id == user_id, Message.event_id.is_not(None)
    )
    await session.execute(
        delete(Message).where(Message.user_id.is_(None), Message.event_id.in_(event_ids))
    )
    await session.execute(delete(Message).where(Message.user_id == user_id))
    await session.execute(delete(User).where(User.id == user_id))
    await _empty_inbox(session, platform=who.platform, external_id=who.external_id, asking=event_id)


async def _empty_inbox(
    session: AsyncSession, *, platform: str, external_id: str, asking: str
) -> None:
    """Empty the payload (the text, the name) of the user's finished inbox events.

    The rows stay: they are the dedupe record, and a platform's redelivery of an event after
    /forget must still be seen as a duplicate, not answered (and stored) again. A pending
    event keeps its payload: its worker, or `resume_abandoned` once that worker is gone, still
    needs it. The exception is ``asking``, the /forget event itself: it is marked done in this
    same transaction, so nothing reads its payload again unless this rolls back.
    """
    await session.execute(
        update(InboxEvent)
        .where(
            InboxEvent.platform == platform,
            InboxEvent.payload["user_id"].as_string() == external_id,
            or_(InboxEvent.status != "pending", InboxEvent.event_id == asking),
        )
        .values(payload={})
    )


async def usage_of(
    session: AsyncSession, *, platform: str, external_id: str, day: date
) -> Usage | None:
    """Today's usage of a platform user, without creating anything."""
    return await session.scalar(
        select(Usage)
        .join(User, User.id == Usage.user_id)
        .where(User.platform == platform, User.external_id == external_id)
        .where(Usage.day == day.isoformat())
    )
