"""ORM models. Alembic owns the schema; every change here needs a migration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import text as sql_text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("platform", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(128))
    display_name: Mapped[str | None] = mapped_column(String(256))
    language: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("platform", "chat_id", "thread_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    chat_id: Mapped[str] = mapped_column(String(128))
    # "" rather than NULL so the unique constraint also holds for chats without threads.
    thread_id: Mapped[str] = mapped_column(String(128), default="")
    # /reset starts a new epoch; only the current epoch's turns form the context.
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_conversation_time", "conversation_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    # "chat" turns form the conversation's context; "command" turns (/gen, /help) are kept
    # for the record but never sent back to the model.
    kind: Mapped[str] = mapped_column(String(16), default="chat")
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    event_id: Mapped[str | None] = mapped_column(String(256))
    sentiment: Mapped[str | None] = mapped_column(String(16))
    tokens: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class InboxEvent(Base):
    """Every incoming event, stored before any work: the dedupe key and the resume point."""

    __tablename__ = "inbox"
    __table_args__ = (
        UniqueConstraint("platform", "event_id"),
        # Finds a conversation's earlier pending events without scanning its finished ones.
        Index(
            "ix_inbox_conversation_pending",
            "conversation_key",
            "id",
            postgresql_where=sql_text("status = 'pending'"),
            sqlite_where=sql_text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(256))
    # storage.inbox_order.conversation_key(): events of one conversation are handled in order.
    conversation_key: Mapped[str | None] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class Feedback(Base):
    """A 👍 / 👎 on a generated answer, from any platform; one vote per user and answer."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("platform", "event_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    # The event whose answer is rated: the inbox's platform event id.
    event_id: Mapped[str] = mapped_column(String(256))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    score: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Handoff(Base):
    """A question the bot could not answer, passed to a person ("Ask a person").

    Sent to the support desk's webhook (HANDOFF_WEBHOOK_URL) until it is taken, then closed by
    the person who answered it. One per unanswered question, however often the button is pressed.
    A person's answer (`switchboard handoffs answer`) is kept here and sent into the chat by the
    bot, retried like the desk's delivery, and joins the conversation once sent.
    """

    __tablename__ = "handoffs"
    __table_args__ = (
        UniqueConstraint("conversation_id", "event_id"),
        Index(
            "ix_handoffs_undelivered",
            "next_attempt_at",
            sqlite_where=sql_text("delivered_at IS NULL"),
            postgresql_where=sql_text("delivered_at IS NULL"),
        ),
        Index(
            "ix_handoffs_answers_due",
            "answer_due_at",
            sqlite_where=sql_text("answer_due_at IS NOT NULL"),
            postgresql_where=sql_text("answer_due_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The unanswered question's event (as carried by the button, at most 56 characters).
    event_id: Mapped[str] = mapped_column(String(256))
    question: Mapped[str] = mapped_column(Text)
    # The conversation's recent turns, [{"role": ..., "text": ...}], for the person taking it.
    transcript: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answer: Mapped[str | None] = mapped_column(Text)
    answered_by: Mapped[str | None] = mapped_column(String(128))
    # The next try at sending the answer into the chat; None when there is nothing to send.
    answer_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answer_attempts: Mapped[int] = mapped_column(Integer, default=0)
    answer_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answer_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# --- knowledge base (issue 6) ------------------------------------------------------------


class Document(Base):
    """One ingested file; ``content_hash`` and ``embedding_model`` decide whether re-adding it
    changes anything."""

    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The resolved absolute path: the identity of a document across `kb add` runs.
    path: Mapped[str] = mapped_column(String(1024), unique=True)
    title: Mapped[str] = mapped_column(String(512))
    kind: Mapped[str] = mapped_column(String(16))  # txt, md, html, pdf or faq
    content_hash: Mapped[str] = mapped_column(String(64))
    # The model that embedded the chunks (an id, or a folder): vectors of two models never mix.
    # NULL for documents added before it was recorded, which counts as another model.
    embedding_model: Mapped[str | None] = mapped_column(String(1024))
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Chunk(Base):
    """A retrievable piece of a document: a passage, or one question-and-answer row of an FAQ."""

    __tablename__ = "chunks"
    __table_args__ = (Index("ix_chunks_document_position", "document_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # "passage" or "faq"
    # The heading path of a passage ("Refunds › Timing"); the question of an FAQ row.
    section: Mapped[str] = mapped_column(Text)
    # The passage itself; the answer of an FAQ row.
    text: Mapped[str] = mapped_column(Text)
    # float32 row of the embedder, L2-normalised; its length / 4 is the dimension.
    embedding: Mapped[bytes] = mapped_column(LargeBinary)


class KnowledgeBaseState(Base):
    """A single row whose version goes up on every change, so each process can tell cheaply
    (one primary-key read per question) that its in-memory index is stale."""

    __tablename__ = "kb_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)


# --- products and purchases (issue 7) ---------------------------------------------------


class Product(Base):
    """A catalog entry; ``embedding`` is the product text's L2-normalised float32 vector."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The shop's own id (SKU, ASIN, ...): what import files and /buy refer to.
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    title: Mapped[str] = mapped_column(String(512))
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(256), default="", index=True)
    price: Mapped[float | None] = mapped_column(Float)
    url: Mapped[str | None] = mapped_column(String(1024))
    # Raw little-endian float32 bytes (numpy ``tobytes``); NULL until the text is embedded.
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Indexed: its maximum tells the recommender's in-memory index that a re-import changed it.
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow, index=True
    )


class Purchase(Base):
    """One product bought by one user, from chat (/buy) or an import."""

    __tablename__ = "purchases"
    # Re-importing the same file must not double the history, hence the unique triple.
    __table_args__ = (
        UniqueConstraint("user_id", "product_id", "purchased_at"),
        Index("ix_purchases_user_time", "user_id", "purchased_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), index=True
    )
    purchased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # "chat" for /buy, "import" for `switchboard purchases import`.
    source: Mapped[str] = mapped_column(String(32), default="chat")


class Usage(Base):
    """What a user consumed on one UTC day, for quotas and /stats."""

    __tablename__ = "usage"
    __table_args__ = (UniqueConstraint("user_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    day: Mapped[str] = mapped_column(String(10))  # ISO date, UTC
    messages: Mapped[int] = mapped_column(Integer, default=0)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    images: Mapped[int] = mapped_column(Integer, default=0)
