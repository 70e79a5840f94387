"""The inbox as each conversation's queue, for several processes sharing one PostgreSQL database.

An event may be handled once no earlier event of its conversation is still pending. "Earlier"
is the inbox id, which only means arrival order if a row with a smaller id can never become
visible after a larger one: so on PostgreSQL, storing an event first takes a transaction-scoped
advisory lock on its conversation (``lock_conversation``), released by that short insert's
commit. No lock outlives the insert, so nothing holds a connection while a model answers.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import InboxEvent

# The advisory lock space is shared by everything on the server: ours are (NAMESPACE, key).
NAMESPACE = 0x5342  # "SB"


def conversation_key(platform: str, chat_id: str, thread_id: str) -> str:
    """The inbox's text form of a conversation: unambiguous whatever the ids contain."""
    return json.dumps([platform, chat_id, thread_id], separators=(",", ":"))


def lock_id(key: str) -> int:
    """A signed 32-bit hash of ``key``; a collision only serialises two conversations' inserts."""
    digest = hashlib.blake2b(key.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_conversation(session: AsyncSession, *, key: str) -> None:
    """Serialise the inbox inserts of one conversation until this transaction ends.

    PostgreSQL only; SQLite has a single writer (and Switchboard a single process) anyway.
    """
    if session.bind is None or session.bind.dialect.name != "postgresql":
        return
    await session.execute(select(func.pg_advisory_xact_lock(NAMESPACE, lock_id(key))))


async def earlier_pending(
    session: AsyncSession, *, platform: str, event_id: str, key: str, live_since: datetime
) -> bool:
    """Whether an earlier event of conversation ``key`` is pending and its worker alive.

    A pending event untouched since ``live_since`` has lost its worker (no heartbeat); it is
    resumed on its own and must not hold up the rest of its conversation meanwhile.
    """
    mine = (
        select(InboxEvent.id)
        .where(InboxEvent.platform == platform, InboxEvent.event_id == event_id)
        .scalar_subquery()
    )
    found = await session.scalar(
        select(InboxEvent.id)
        .where(
            InboxEvent.conversation_key == key,
            InboxEvent.status == "pending",
            InboxEvent.id < mine,
            InboxEvent.updated_at >= live_since,
        )
        .limit(1)
    )
    return found is not None
