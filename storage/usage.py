"""Usage statistics and the right to be forgotten (the counters themselves are group-committed
by storage/turns.py `add_usage`). Functions never commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Message, Usage, User


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
