"""Usage counters, statistics and the right to be forgotten. Functions never commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Message, Usage, User
from storage.repositories import _insert_ignore


async def usage_today(session: AsyncSession, *, user_id: int, day: date) -> Usage:
    await _insert_ignore(
        session,
        Usage,
        {"user_id": user_id, "day": day.isoformat(), "messages": 0, "tokens": 0, "images": 0},
    )
    usage = await session.scalar(
        select(Usage).where(Usage.user_id == user_id, Usage.day == day.isoformat())
    )
    assert usage is not None
    return usage


async def add_usage(
    session: AsyncSession,
    *,
    user_id: int,
    day: date,
    messages: int = 0,
    tokens: int = 0,
    images: int = 0,
) -> None:
    """Atomic increments, so concurrent replicas never lose a count."""
    increment = (
        update(Usage)
        .where(Usage.user_id == user_id, Usage.day == day.isoformat())
        .values(
            messages=Usage.messages + messages,
            tokens=Usage.tokens + tokens,
            images=Usage.images + images,
        )
    )
    # The day's row usually exists: one UPDATE; the first message of a day creates it.
    if not getattr(await session.execute(increment), "rowcount", 0):
        await usage_today(session, user_id=user_id, day=day)
        await session.execute(increment)


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


async def forget_user(session: AsyncSession, *, user_id: int) -> None:
    """Delete everything stored about a user: their turns and the answers to them; the
    user row's cascade removes purchases, feedback, usage and hand-offs."""
    event_ids = select(Message.event_id).where(
        Message.user_id == user_id, Message.event_id.is_not(None)
    )
    await session.execute(
        delete(Message).where(Message.user_id.is_(None), Message.event_id.in_(event_ids))
    )
    await session.execute(delete(Message).where(Message.user_id == user_id))
    await session.execute(delete(User).where(User.id == user_id))


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
