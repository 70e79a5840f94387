"""Engine and unit of work. SQLite gets WAL and a busy timeout; PostgreSQL runs as is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

SessionFactory = async_sessionmaker[AsyncSession]


class StoreSession(Session):
    """Notes in ``info`` when it first talks to the database (see `used_database`)."""


@event.listens_for(StoreSession, "after_begin")
def _note_connection(session: Session, _transaction: Any, _connection: Any) -> None:
    session.info["connected"] = True


def used_database(session: AsyncSession) -> bool:
    """Whether the session has run a statement or holds changes it would flush."""
    return bool(session.info.get("connected") or session.new or session.dirty or session.deleted)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # Generous: under a burst, waiting for the write lock beats failing a user's message.
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 20) -> AsyncEngine:
    parsed = make_url(url)
    pool = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": 60}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, **pool)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True, **pool)


def session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=StoreSession)


@asynccontextmanager
async def unit_of_work(sessions: SessionFactory) -> AsyncIterator[AsyncSession]:
    """One transaction: commits when the block ends normally, rolls back otherwise."""
    async with sessions() as session, session.begin():
        yield session
