"""Group commit: the writes of messages handled at the same moment share one transaction.

Every message writes the same few rows: its inbox event, the user's turn, then the answer's
turns with the usage count and the inbox's "done" mark. One transaction and a handful of
statements per message cost more than the rest of the message's path (on SQLite, every
statement is several hand-offs to aiosqlite's thread, and the single write lock makes
concurrent writers queue). So writers queue here instead: whoever finds no flush running starts
one, and everything queued while a transaction is in progress goes into the next one, each kind
of statement as one executemany. Under a burst of 200 users a transaction carries dozens of
messages; a lone message is written at once, as before.

A message's writes stay atomic (they are in one transaction), and a caller returns only once
they are committed. If a shared transaction fails, each message's writes are retried in a
transaction of their own, so one bad write fails only its own message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import ARRAY, Executable, Integer, bindparam, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage import inbox_order
from storage.models import InboxEvent
from storage.repositories import inbox_row

log = logging.getLogger(__name__)

# PostgreSQL: the advisory locks of a batch's conversations in one statement, in key order
# (the sorted subquery feeds the locking projection row by row).
_LOCK_ALL = text(
    "SELECT count(pg_advisory_xact_lock(:namespace, k))"
    " FROM (SELECT unnest(:keys) AS k ORDER BY 1) AS keys"
).bindparams(bindparam("keys", type_=ARRAY(Integer)), bindparam("namespace", type_=Integer))


@dataclass(frozen=True, slots=True)
class Write:
    """One row's worth of a statement. Writes of the same statement object (build each
    statement once, at import or per dialect) are executed together as one executemany."""

    statement: Executable
    params: dict[str, Any]


@dataclass(slots=True)
class _Job:
    writes: Sequence[Write] = ()
    event: dict[str, Any] | None = None
    done: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class _Waiting(Protocol):
    @property
    def done(self) -> asyncio.Future[Any]: ...


JobT = TypeVar("JobT", bound=_Waiting)


class Batched(Generic[JobT]):
    """Jobs queued while a run is in progress go into the next run together; whoever finds no
    run in progress starts one, so a lone job runs at once. A failing run is repeated job by
    job, so one bad job fails only its own caller."""

    def __init__(self, engine: AsyncEngine, *, max_batch: int = 200) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: list[JobT] = []
        self._flusher: asyncio.Task[None] | None = None

    async def _submit(self, job: JobT) -> Any:
        self._queue.append(job)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        # A caller cancelled meanwhile cancels only its future; the run skips or ignores it.
        return await job.done

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                try:
                    await self._run(batch)
                except Exception as exc:
                    if len(batch) == 1:
                        _fail(batch[0], exc)
                        continue
                    log.warning("a batch of %d store jobs failed; one by one now", len(batch))
                    for job in batch:
                        try:
                            await self._run([job])
                        except Exception as alone:
                            _fail(job, alone)
        finally:
            # Cancelled (the loop is closing): nobody may wait forever.
            for job in self._queue:
                _fail(job, RuntimeError("the store closed before this job ran"))
            self._queue.clear()

    async def wait_idle(self) -> None:
        """Wait until everything queued so far has run (tests, and a clean shutdown)."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def _run(self, batch: list[JobT]) -> None:
        raise NotImplementedError


class GroupCommit(Batched[_Job]):
    def __init__(self, engine: AsyncEngine, *, max_batch: int = 200) -> None:
        super().__init__(engine, max_batch=max_batch)
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._postgres = engine.dialect.name == "postgresql"
        self._insert_event = (
            insert(InboxEvent)
            .on_conflict_do_nothing()
            .returning(InboxEvent.platform, InboxEvent.event_id)
        )

    async def record_event(
        self,
        *,
        platform: str,
        event_id: str,
        payload: dict[str, Any],
        conversation_key: str | None = None,
    ) -> bool:
        """Store an incoming event as pending; False when this event id was seen before."""
        row = inbox_row(platform, event_id, payload, conversation_key)
        fresh: bool = await self._submit(_Job(event=row))
        return fresh

    async def commit(self, writes: Sequence[Write]) -> None:
        """Write these rows in one transaction (shared with other callers); returns once
        they are committed."""
        if writes:
            await self._submit(_Job(writes=writes))

    async def _run(self, batch: list[_Job]) -> None:
        async with self._engine.begin() as connection:
            fresh = await self._insert_events(connection, [j.event for j in batch if j.event])
            grouped: dict[int, tuple[Executable, list[dict[str, Any]]]] = {}
            for job in batch:
                for write in job.writes:
                    grouped.setdefault(id(write.statement), (write.statement, []))[1].append(
                        write.params
                    )
            for statement, params in grouped.values():
                await connection.execute(statement, params)
        for job in batch:
            if not job.done.done():
                event = job.event
                key = (event["platform"], event["event_id"]) if event else None
                job.done.set_result(key is None or fresh.pop(key, False))

    async def _insert_events(
        self, connection: AsyncConnection, rows: list[dict[str, Any]]
    ) -> dict[tuple[str, str], bool]:
        if not rows:
            return {}
        if self._postgres:
            # Inbox ids must follow commit order per conversation (storage/inbox_order.py);
            # the locks are taken in one order so two replicas' batches cannot deadlock.
            keys = sorted(
                {inbox_order.lock_id(k) for r in rows if (k := r["conversation_key"]) is not None}
            )
            if keys:
                await connection.execute(
                    _LOCK_ALL, {"namespace": inbox_order.NAMESPACE, "keys": keys}
                )
        # The same update twice in one batch (a fast redelivery): the first one is the event.
        unique: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows:
            unique.setdefault((row["platform"], row["event_id"]), row)
        result = await connection.execute(self._insert_event, list(unique.values()))
        return {(platform, event_id): True for platform, event_id in result.all()}


def _fail(job: _Waiting, exc: BaseException) -> None:
    if not job.done.done():
        job.done.set_exception(exc)
