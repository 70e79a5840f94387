"""Who may talk to the bot, and how much: allowlists, admins, daily quotas, a rate limit."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from handlers.middleware import Envelope, Next
from handlers.types import Incoming, Reply
from storage import usage as usage_repo
from storage.db import SessionFactory, unit_of_work

PRIVATE = "Sorry, this assistant is private. Ask its administrator for access."


def _ids(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.strip() for v in values if v.strip())


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """Entries are bare ids ("12345") or platform-qualified ("telegram:12345"). An empty
    allowlist means open; admins are always let in."""

    users: frozenset[str] = frozenset()
    chats: frozenset[str] = frozenset()
    workspaces: frozenset[str] = frozenset()
    admins: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        *,
        users: Iterable[str] = (),
        chats: Iterable[str] = (),
        workspaces: Iterable[str] = (),
        admins: Iterable[str] = (),
    ) -> AccessPolicy:
        return cls(_ids(users), _ids(chats), _ids(workspaces), _ids(admins))

    @staticmethod
    def _listed(entries: frozenset[str], platform: str, value: str | None) -> bool:
        return value is not None and (value in entries or f"{platform}:{value}" in entries)

    def is_admin(self, incoming: Incoming) -> bool:
        return self._listed(self.admins, incoming.platform, incoming.user_id)

    def allows(self, incoming: Incoming) -> bool:
        if self.is_admin(incoming):
            return True
        checks = [
            (self.users, incoming.user_id),
            (self.chats, incoming.chat_id),
            (self.workspaces, incoming.workspace_id),
        ]
        return all(
            not entries or self._listed(entries, incoming.platform, value)
            for entries, value in checks
        )


class AccessMiddleware:
    def __init__(self, policy: AccessPolicy) -> None:
        self._policy = policy

    async def __call__(self, envelope: Envelope, call_next: Next) -> None:
        incoming = envelope.incoming
        if not self._policy.allows(incoming):
            if incoming.is_private or incoming.action is not None:
                await envelope.responder.send(Reply(text=PRIVATE, private=True))
            return
        envelope.is_admin = self._policy.is_admin(incoming)
        await call_next(envelope)


@dataclass(frozen=True, slots=True)
class Quotas:
    """Per user and UTC day; 0 means unlimited."""

    messages_per_day: int = 0
    tokens_per_day: int = 0
    images_per_day: int = 0
    messages_per_minute: int = 0


def _resets(now: datetime) -> str:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    left = tomorrow - now
    hours, minutes = divmod(int(left.total_seconds()) // 60, 60)
    return f"resets at 00:00 UTC (in {hours}h {minutes:02d}m)"


class QuotaMiddleware:
    """Refuses work past a user's daily quota or rate, with when it resets. Admins are exempt.

    The per-minute rate is kept in this process (a burst guard); daily quotas live in the
    database, so they hold across replicas and restarts.
    """

    def __init__(
        self,
        sessions: SessionFactory,
        quotas: Quotas,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._quotas = quotas
        self._clock = clock
        self._monotonic = monotonic
        self._recent: dict[tuple[str, str], deque[float]] = {}

    async def __call__(self, envelope: Envelope, call_next: Next) -> None:
        refusal = None if envelope.is_admin else await self._refusal(envelope.incoming)
        if refusal is not None:
            await envelope.responder.send(Reply(text=refusal, private=True))
            return
        await call_next(envelope)

    def _too_fast(self, incoming: Incoming) -> bool:
        limit = self._quotas.messages_per_minute
        if not limit or incoming.action is not None:
            return False
        now = self._monotonic()
        recent = self._recent.setdefault((incoming.platform, incoming.user_id), deque())
        while recent and now - recent[0] > 60:
            recent.popleft()
        if len(recent) >= limit:
            return True
        recent.append(now)
        return False

    async def _refusal(self, incoming: Incoming) -> str | None:
        if self._too_fast(incoming):
            return "You're sending messages too quickly; please wait a minute and try again."
        quotas = self._quotas
        if not (quotas.messages_per_day or quotas.tokens_per_day or quotas.images_per_day):
            return None
        now = self._clock()
        async with unit_of_work(self._sessions) as session:
            used = await usage_repo.usage_of(
                session, platform=incoming.platform, external_id=incoming.user_id, day=now.date()
            )
        if used is None:
            return None
        for limit, spent, what in (
            (quotas.messages_per_day, used.messages, "messages"),
            (quotas.tokens_per_day, used.tokens, "generated tokens"),
            (quotas.images_per_day, used.images, "images"),
        ):
            if limit and spent >= limit:
                what = what.removesuffix("s") if limit == 1 else what
                return f"Daily quota reached ({limit} {what}); it {_resets(now)}."
        return None


class MessageLengthMiddleware:
    """Refuses over-long messages with a clear reply instead of sending them to a model."""

    def __init__(self, max_chars: int) -> None:
        self._max = max_chars

    async def __call__(self, envelope: Envelope, call_next: Next) -> None:
        length = len(envelope.incoming.text)
        if self._max and length > self._max:
            text = (
                f"That message is too long ({length:,} characters; the limit is {self._max:,}). "
                "Please shorten it or split it into parts."
            )
            await envelope.responder.send(Reply(text=text, private=True))
            return
        await call_next(envelope)
