"""The store's per-message path: one read for who is talking and what was said, then
group-committed writes (storage/group_commit.py).

`ConversationMiddleware` uses this for the common case, a known user in a known conversation;
everything else (a first message, a changed display name, a resumed event) goes through the ORM
repositories in storage/repositories.py, which this module matches row for row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cache

from sqlalchemy import Executable, and_, bindparam, func, insert, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import make_transient_to_detached

from storage.group_commit import Write
from storage.models import Conversation, InboxEvent, Message, Usage, User, utcnow

HISTORY_LIMIT = 200

_users, _conversations, _messages = User.__table__, Conversation.__table__, Message.__table__

# The user, the conversation and the current context's chat turns, newest first, in one query.
# No row at all: the user or the conversation does not exist yet.
_STATE = (
    select(
        _users.c.id,
        _users.c.display_name,
        _users.c.language,
        _conversations.c.id,
        _conversations.c.epoch,
        _messages.c.role,
        _messages.c.text,
        _messages.c.event_id,
    )
    .select_from(
        _users.join(_conversations, true()).outerjoin(
            _messages,
            and_(
                _messages.c.conversation_id == _conversations.c.id,
                _messages.c.epoch == _conversations.c.epoch,
                _messages.c.kind == "chat",
            ),
        )
    )
    .where(
        _users.c.platform == bindparam("platform"),
        _users.c.external_id == bindparam("external_id"),
        _conversations.c.platform == bindparam("platform"),
        _conversations.c.chat_id == bindparam("chat_id"),
        _conversations.c.thread_id == bindparam("thread_id"),
    )
    .order_by(_messages.c.id.desc())
    .limit(HISTORY_LIMIT)
)

_ADD_MESSAGE = insert(Message)
_MARK_EVENT = (
    update(InboxEvent)
    .where(
        InboxEvent.platform == bindparam("match_platform"),
        InboxEvent.event_id == bindparam("match_event_id"),
    )
    .values(status=bindparam("new_status"), error=None, updated_at=bindparam("new_updated_at"))
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


async def load_state(
    engine: AsyncEngine, *, platform: str, external_id: str, chat_id: str, thread_id: str
) -> State | None:
    params = {
        "platform": platform,
        "external_id": external_id,
        "chat_id": chat_id,
        "thread_id": thread_id,
    }
    async with engine.connect() as connection:
        rows = (await connection.execute(_STATE, params)).all()
    if not rows:
        return None
    user_id, display_name, language, conversation_id, epoch = rows[0][:5]
    user = User(
        id=user_id,
        platform=platform,
        external_id=external_id,
        display_name=display_name,
        language=language,
    )
    conversation = Conversation(
        id=conversation_id, platform=platform, chat_id=chat_id, thread_id=thread_id, epoch=epoch
    )
    make_transient_to_detached(user)
    make_transient_to_detached(conversation)
    history = [StoredTurn(row[5], row[6], row[7]) for row in reversed(rows) if row[5] is not None]
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
