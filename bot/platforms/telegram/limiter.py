"""Outbound pacing that keeps to Telegram's published limits, so replies wait instead of failing.

Telegram allows about one message a second per chat, 20 a minute per group and 30 a second in all
(https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this). A 429 still
can happen (limits are not exact); its ``retry_after`` then holds the chat, or the whole bot.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

# Beyond this many tracked chats, idle ones are forgotten.
_PRUNE_AT = 4096


class Kind(Enum):
    MESSAGE = "message"  # sendMessage, sendPhoto: every limit applies
    EDIT = "edit"  # editMessageText: its own per-chat rate
    OTHER = "other"  # drafts, chat actions, callback answers: only the overall rate


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` events in any ``period`` seconds."""

    count: int
    period: float


@dataclass(frozen=True, slots=True)
class Limits:
    """``None`` lifts a limit (the benchmark does, against a fake server)."""

    per_chat: Rate | None = Rate(1, 1.0)
    per_group: Rate | None = Rate(20, 60.0)
    overall: Rate | None = Rate(30, 1.0)
    # Streaming edits of one chat.
    edits_per_chat: Rate | None = Rate(1, 1.0)


class _Window:
    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self.times: deque[float] = deque()

    def wait(self, now: float) -> float:
        while self.times and self.times[0] <= now - self.rate.period:
            self.times.popleft()
        if len(self.times) < self.rate.count:
            return 0.0
        return self.times[0] + self.rate.period - now


class OutboundLimiter:
    def __init__(
        self,
        limits: Limits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._limits = limits or Limits()
        self._clock = clock
        self._sleep = sleep
        self._overall = _Window(self._limits.overall) if self._limits.overall else None
        self._chats: dict[tuple[str, int], _Window] = {}
        self._held: dict[int | None, float] = {}

    async def acquire(
        self, chat_id: int, *, kind: Kind = Kind.MESSAGE, group: bool = False
    ) -> None:
        """Wait for a slot for one call of ``kind`` to ``chat_id``."""
        while True:
            now = self._clock()
            windows = self._windows(chat_id, kind=kind, group=group)
            held = max(self._held.get(chat_id, 0.0), self._held.get(None, 0.0)) - now
            wait = max([held, *(w.wait(now) for w in windows)])
            if wait <= 0:
                for window in windows:
                    window.times.append(now)
                return
            await self._sleep(wait)

    def hold(self, chat_id: int | None, seconds: float) -> None:
        """Nothing goes to ``chat_id`` (or anywhere, for ``None``) for ``seconds``."""
        until = self._clock() + seconds
        self._held[chat_id] = max(self._held.get(chat_id, 0.0), until)

    def _windows(self, chat_id: int, *, kind: Kind, group: bool) -> list[_Window]:
        windows = [self._overall] if self._overall else []
        rates: list[tuple[str, Rate | None]] = []
        if kind is Kind.MESSAGE:
            rates = [("chat", self._limits.per_chat)]
            if group:
                rates.append(("group", self._limits.per_group))
        elif kind is Kind.EDIT:
            rates = [("edit", self._limits.edits_per_chat)]
        for name, rate in rates:
            if rate is not None:
                windows.append(self._window((name, chat_id), rate))
        return windows

    def _window(self, key: tuple[str, int], rate: Rate) -> _Window:
        window = self._chats.get(key)
        if window is None:
            if len(self._chats) >= _PRUNE_AT:
                self._prune()
            window = self._chats[key] = _Window(rate)
        return window

    def _prune(self) -> None:
        now = self._clock()
        for key in [k for k, w in self._chats.items() if w.wait(now) == 0 and not w.times]:
            del self._chats[key]
        self._held = {k: v for k, v in self._held.items() if v > now}
