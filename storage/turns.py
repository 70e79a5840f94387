"""The store's per-message path: one read for who is talking and what was said, then
group-committed writes (storage/group_commit.py).

`ConversationMiddleware` uses this for the common case, a known user in a known conversation;
everything else (a first message, a changed display name, a resumed event) goes through the ORM
repositories in storage/repositories.py, which this module matches row for row.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from typing import Any

from sqlalchemy import (
    Executable,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    column,
    func,
    insert,
    select,
    update,
    values,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import make_transient_to_detached

from storage.group_commit import Batched, Write
from storage.models import Conversation, InboxEvent, Message, Usage, User, utcnow

HISTORY_LIMIT = 200

_users, _conversations, _messages = User.__table__, Conversation.__table__, Message.__table__

_ADD_MESSAGE = insert(Message)
_MARK_EVENT = (
    update(InboxEvent)
    .where(
        InboxEvent.platform == bindparam("match_platform"),
        InboxEvent.event_id == bindparam("match_event_id"),
    )
    .values(status=bindparam("new_status"), error=None, updated_at=bindparam("new_updated_at"))
)

_TOUCH_EVENT = (
    update(InboxEvent)
    .where(
        InboxEvent.platform == bindparam("match_platform"),
        InboxEvent.event_id == bindparam("match_event_id"),
    )
    .values(updated_at=bindparam("new_updated_at"))
)


@dataclass(frozen=True, slots=True)
class StoredTurn:
    role: str
    text: str
    event_id: str | None


@dataclass(frozen=True, slots=True)
class State:
    """A known user in a known conversation, as detached ORM objects (merge them with
    ``load=False`` to use them in a session), and the context's turns, oldest first."""

    user: User
    conversation: Conversation
    history: list[StoredTurn]


@dataclass(slots=True)
class _Wanted:
    platform: str
    external_id: str
    chat_id: str
    thread_id: str
    done: asyncio.Future[State | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class States(Batched[_Wanted]):
    """Reads who is talking and what was said, for every message arriving together in one
    query: a query's round trips through the driver cost more than the rows it reads."""

    async def load(
        self, *, platform: str, external_id: str, chat_id: str, thread_id: str
    ) -> State | None:
        """None when the user or the conversation does not exist yet."""
        state: State | None = await self._submit(_Wanted(platform, external_id, chat_id, thread_id))
        return state

    async def _run(self, batch: list[_Wanted]) -> None:
        async with self._engine.connect() as connection:
            rows = (await connection.execute(_states_query(batch))).all()
        found: dict[int, list[Any]] = {}
        for row in rows:
            found.setdefault(row.k, []).append(row)
        for k, wanted in enumerate(batch):
            if not wanted.done.done():
                wanted.done.set_result(_state(wanted, found.get(k)))


def _states_query(batch: list[_Wanted]) -> Select[Any]:
    """Per wanted message (k): the user, the conversation and the newest HISTORY_LIMIT chat
    turns of its current epoch, oldest first; no row for k when either does not exist."""
    wanted = (
        values(
            column("k", Integer),
            column("platform", String),
            column("external_id", String),
            column("chat_id", String),
            column("thread_id", String),
            name="wanted",
        )
        .data([(k, w.platform, w.external_id, w.chat_id, w.thread_id) for k, w in enumerate(batch)])
        .cte("wanted")
    )
    found = (
        select(
            wanted.c.k,
            _users.c.id.label("user_id"),
            _users.c.display_name,
            _users.c.language,
            _conversations.c.id.label("conversation_id"),
            _conversations.c.epoch,
        )
        .join(
            _users,
            and_(
                _users.c.platform == wanted.c.platform,
                _users.c.external_id == wanted.c.external_id,
            ),
        )
        .join(
            _conversations,
            and_(
                _conversations.c.platform == wanted.c.platform,
                _conversations.c.chat_id == wanted.c.chat_id,
                _conversations.c.thread_id == wanted.c.thread_id,
            ),
        )
        .cte("found")
    )
    newest_first = func.row_number().over(partition_by=found.c.k, order_by=_messages.c.id.desc())
    turns = (
        select(
            found.c.k,
            _messages.c.id,
            _messages.c.role,
            _messages.c.text,
            _messages.c.event_id,
            newest_first.label("rank"),
        )
        .join(
            _messages,
            and_(
                _messages.c.conversation_id == found.c.conversation_id,
                _messages.c.epoch == found.c.epoch,
                _messages.c.kind == "chat",
            ),
        )
        .subquery("turns")
    )
    return (
        select(found, turns.c.role, turns.c.text, turns.c.event_id)
        .outerjoin(turns, and_(turns.c.k == found.c.k, turns.c.rank <= HISTORY_LIMIT))
        .order_by(found.c.k, turns.c.id)
    )


def _state(wanted: _Wanted, rows: list[Any] | None) -> State | None:
    if not rows:
        return None
    first = rows[0]
    user = User(
        id=first.user_id,
        platform=wanted.platform,
        external_id=wanted.external_id,
        display_name=first.display_name,
        language=first.language,
    )
    conversation = Conversation(
        id=first.conversation_id,
        platform=wanted.platform,
        chat_id=wanted.chat_id,
        thread_id=wanted.thread_id,
        epoch=first.epoch,
    )
    make_transient_to_detached(user)
    make_transient_to_detached(conversation)
    history = [StoredTurn(r.role, r.text, r.event_id) for r in rows if r.role is not None]
    return State(user, conversation, history)


def ensure_user(
    engine: AsyncEngine,
    *,
    platform: str,
    external_id: str,
    display_name: str | None,
    language: str | None,
) -> Write:
    """Create the user, or keep its display name current (the repositories' rules: the
    language is set once, a missing name never erases one)."""
    return Write(
        _upserts(engine.dialect.name).user,
        {
            "platform": platform,
            "external_id": external_id,
            "display_name": display_name,
            "language": language,
            "created_at": utcnow(),
        },
    )


def ensure_conversation(
    engine: AsyncEngine, *, platform: str, chat_id: str, thread_id: str
) -> Write:
    return Write(
        _upserts(engine.dialect.name).conversation,
        {
            "platform": platform,
            "chat_id": chat_id,
            "thread_id": thread_id,
            "epoch": 0,
            "created_at": utcnow(),
        },
    )


def add_message(
    *,
    conversation: Conversation,
    role: str,
    text: str,
    kind: str,
    user_id: int | None = None,
    event_id: str | None = None,
) -> Write:
    """The row `repositories.add_message` would add."""
    return Write(
        _ADD_MESSAGE,
        {
            "conversation_id": conversation.id,
            "user_id": user_id,
            "role": role,
            "text": text,
            "kind": kind,
            "epoch": conversation.epoch,
            "event_id": event_id,
            "sentiment": None,
            "tokens": None,
            "created_at": utcnow(),
        },
    )


def mark_event(*, platform: str, event_id: str, status: str) -> Write:
    return Write(
        _MARK_EVENT,
        {
            "match_platform": platform,
            "match_event_id": event_id,
            "new_status": status,
            "new_updated_at": utcnow(),
        },
    )


def touch_event(*, platform: str, event_id: str) -> Write:
    """The heartbeat of an event being worked on, so no other process resumes it."""
    return Write(
        _TOUCH_EVENT,
        {"match_platform": platform, "match_event_id": event_id, "new_updated_at": utcnow()},
    )


def add_usage(
    engine: AsyncEngine, *, user_id: int, day: date, messages: int, tokens: int, images: int
) -> Write:
    """Increments of a user's day, creating the row on the first message of the day."""
    return Write(
        _upserts(engine.dialect.name).usage,
        {
            "user_id": user_id,
            "day": day.isoformat(),
            "messages": messages,
            "tokens": tokens,
            "images": images,
        },
    )


@dataclass(frozen=True, slots=True)
class _Upserts:
    user: Executable
    conversation: Executable
    usage: Executable


@cache
def _upserts(dialect: str) -> _Upserts:
    """Built once per dialect: group commit batches writes of the same statement object."""
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    user = insert_(User)
    usage = insert_(Usage)
    return _Upserts(
        user=user.on_conflict_do_update(
            index_elements=[User.platform, User.external_id],
            set_={"display_name": func.coalesce(user.excluded.display_name, User.display_name)},
        ),
        conversation=insert_(Conversation).on_conflict_do_nothing(),
        usage=usage.on_conflict_do_update(
            index_elements=[Usage.user_id, Usage.day],
            set_={
                "messages": Usage.messages + usage.excluded.messages,
                "tokens": Usage.tokens + usage.excluded.tokens,
                "images": Usage.images + usage.excluded.images,
            },
        ),
    )
