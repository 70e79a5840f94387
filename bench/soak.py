"""Soak: simulated Telegram users for a while, with a model that fails and stalls, and
Telegram delivering some updates twice. Nothing may be lost and nothing answered twice.

USERS users (private chats) each write a message, wait for the answer, think for a moment and
write again, until SECONDS have passed. Every message goes through Switchboard's whole path:
the webhook served by uvicorn, inbox, ordering, user and conversation, history, the model,
stored turns, Telegram HTML and the answer, on a migrated SQLite store, against the fake Bot
API server. The stand-in model answers at once mostly, stalls for a few seconds now and then,
and sometimes fails (ProviderError): the user then gets the apology, which counts as an answer.
Some updates are delivered a second time, as Telegram does after a timeout: at once (racing
the first) or after the answer. The outbound limiter's limits are lifted: Telegram's 30
messages a second would measure Telegram's rules, not our code.

Every answer names its message (#update_id), so each update is matched with its replies:
lost = an update with no reply at all; duplicated = an update answered more than once.
Latency runs from the first delivery to the first reply.

    .venv/bin/python bench/soak.py [--seconds 60] [--users 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bot.compose import App, build_app  # noqa: E402
from bot.migrate import upgrade  # noqa: E402
from bot.platforms.telegram import WEBHOOK_PATH, Limits, Pacing  # noqa: E402
from bot.settings import Settings  # noqa: E402
from services.container import GenerationConfig, Services  # noqa: E402
from services.types import ProviderError, Turn  # noqa: E402
from storage.db import unit_of_work  # noqa: E402
from storage.models import InboxEvent  # noqa: E402
from tests.fakes.telegram_server import Call, FakeTelegramServer, message_update, user  # noqa: E402
from tests.platforms.telegram_harness import SECRET, TelegramHarness  # noqa: E402

NO_LIMITS = Limits(per_chat=None, per_group=None, overall=None, edits_per_chat=None)
TAG = re.compile(r"#(\d+)")
# How long a user waits for an answer before writing again anyway (the answer still counts
# when it comes), and how long the run waits at the end for answers still in flight.
PATIENCE = 30.0
DRAIN = 60.0


@dataclass(frozen=True, slots=True)
class Faults:
    fail: float = 0.10  # share of answers where the model raises ProviderError
    slow: float = 0.10  # share of answers where the model stalls for slow_seconds
    slow_seconds: tuple[float, float] = (1.0, 4.0)
    duplicate: float = 0.05  # share of updates Telegram delivers a second time
    think: tuple[float, float] = (0.5, 3.0)  # a user's pause between messages


class FlakyModel:
    """A TextGenerator that answers instantly, stalls, or fails, naming the message it
    answers (its #tag) either way, so that every reply can be matched to its update."""

    name = "flaky"
    context_window = 4096

    def __init__(self, faults: Faults, rng: random.Random) -> None:
        self._faults = faults
        self._rng = rng
        self.failed = 0
        self.stalled = 0

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 1

    async def stream(
        self, turns: Sequence[Turn], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str]:
        found = TAG.search(turns[-1].text)
        tag = f"#{found.group(1)}" if found else "#?"
        roll = self._rng.random()
        if roll < self._faults.fail:
            self.failed += 1
            await asyncio.sleep(self._rng.uniform(0, 0.2))
            raise ProviderError(f"Sorry, the model failed on {tag}; try again in a minute.")
        if roll < self._faults.fail + self._faults.slow:
            self.stalled += 1
            await asyncio.sleep(self._rng.uniform(*self._faults.slow_seconds))
        else:
            await asyncio.sleep(self._rng.uniform(0, 0.05))
        for word in f"Answer to {tag}: all is well here.".split(" "):
            yield word + " "


@dataclass(slots=True)
class Ledger:
    """Every update sent and every reply seen, matched by update id."""

    sent_at: dict[int, float] = field(default_factory=dict)
    replies: Counter[int] = field(default_factory=Counter)
    first_reply: dict[int, float] = field(default_factory=dict)
    waiting: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    duplicates_sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)

    def on_call(self, call: Call) -> None:
        if call.method not in ("sendMessage", "sendPhoto"):
            return
        found = TAG.search(str(call.params.get("text") or call.params.get("caption") or ""))
        if found is None:
            return
        update_id = int(found.group(1))
        self.replies[update_id] += 1
        self.first_reply.setdefault(update_id, time.perf_counter())
        future = self.waiting.pop(update_id, None)
        if future is not None and not future.done():
            future.set_result(None)

    def latencies(self) -> list[float]:
        return sorted(self.first_reply[u] - self.sent_at[u] for u in self.first_reply)


class Users:
    def __init__(self, post_url: str, ledger: Ledger, faults: Faults, rng: random.Random) -> None:
        self._url = post_url
        self._ledger = ledger
        self._faults = faults
        self._rng = rng
        self._ids = iter(range(1_000_000, 10**9))
        self._extra: set[asyncio.Task[None]] = set()

    async def run(self, users: int, seconds: float) -> None:
        connector = aiohttp.TCPConnector(limit=users * 2, keepalive_timeout=3)
        async with aiohttp.ClientSession(connector=connector) as session:
            deadline = time.perf_counter() + seconds
            await asyncio.gather(*(self._user(session, i, deadline) for i in range(users)))
            if self._extra:
                await asyncio.wait(self._extra)

    async def _user(self, session: aiohttp.ClientSession, index: int, deadline: float) -> None:
        chat = 20_000 + index
        # Users do not all start in the same instant.
        await asyncio.sleep(self._rng.uniform(0, self._faults.think[1]))
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            update_id = next(self._ids)
            text = f"message {n} from user {index}, #{update_id}"
            update = {
                "update_id": update_id,
                **message_update(text, chat_id=chat, sender=user(chat)),
            }
            answered = asyncio.get_running_loop().create_future()
            self._ledger.waiting[update_id] = answered
            self._ledger.sent_at[update_id] = time.perf_counter()
            roll = self._rng.random()
            if roll < self._faults.duplicate / 2:
                # A retry racing the first delivery.
                self._again(session, update)
            await self._post(session, update)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(answered), PATIENCE)
            if self._faults.duplicate / 2 <= roll < self._faults.duplicate:
                # A redelivery after the answer went out.
                self._again(session, update)
            await asyncio.sleep(self._rng.uniform(*self._faults.think))

    def _again(self, session: aiohttp.ClientSession, update: dict[str, Any]) -> None:
        self._ledger.duplicates_sent += 1
        task = asyncio.create_task(self._post(session, update))
        self._extra.add(task)
        task.add_done_callback(self._extra.discard)

    async def _post(self, session: aiohttp.ClientSession, update: dict[str, Any]) -> None:
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        for attempt in range(3):
            try:
                async with session.post(self._url, json=update, headers=headers) as response:
                    await response.read()
                    self._ledger.statuses[response.status] += 1
                    return
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                # A kept-alive connection the server just closed: Telegram retries as well.
                if attempt == 2:
                    raise


async def inbox_counts(app: App) -> dict[str, int]:
    async with unit_of_work(app.sessions) as session:
        rows = await session.execute(
            select(InboxEvent.status, func.count()).group_by(InboxEvent.status)
        )
        return {str(status): int(count) for status, count in rows.all()}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def soak(*, users: int, seconds: float, seed: int) -> None:
    faults = Faults()
    rng = random.Random(seed)
    model = FlakyModel(faults, random.Random(seed + 1))
    server = FakeTelegramServer()
    await server.start()
    ledger = Ledger()
    server.listeners.append(ledger.on_call)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), _env_file=None)  # type: ignore[call-arg]
        await asyncio.to_thread(upgrade, settings.db_url)  # alembic runs its own loop
        services = Services(
            text=model,
            generation=GenerationConfig(system_prompt="Be brief.", max_tokens=64, temperature=0),
        )
        app = build_app(settings, services=services)
        harness = TelegramHarness(server, webhook=True, limits=NO_LIMITS, pacing=Pacing())
        await harness.start(app.dispatcher.dispatch, commands=app.router.commands)
        started = time.perf_counter()
        try:
            await Users(harness.url + WEBHOOK_PATH, ledger, faults, rng).run(users, seconds)
            # Answers still in flight when the users stop writing.
            late = [f for f in ledger.waiting.values() if not f.done()]
            if late:
                await asyncio.wait(late, timeout=DRAIN)
            assert harness.platform is not None
            await asyncio.wait_for(harness.platform.wait_idle(), DRAIN)
            elapsed = time.perf_counter() - started
            inbox = await inbox_counts(app)
        finally:
            await harness.stop()
            await app.close()
            await server.stop()
    report(ledger, model, inbox, users=users, seconds=seconds, elapsed=elapsed, faults=faults)


def report(
    ledger: Ledger,
    model: FlakyModel,
    inbox: dict[str, int],
    *,
    users: int,
    seconds: float,
    elapsed: float,
    faults: Faults,
) -> None:
    sent = len(ledger.sent_at)
    answered = sum(1 for u in ledger.sent_at if ledger.replies[u] >= 1)
    duplicated = sum(1 for u in ledger.sent_at if ledger.replies[u] > 1)
    lost = sent - answered
    latencies = ledger.latencies()
    print(
        f"soak: {users} users for {seconds:.0f} s (all answered after {elapsed:.1f} s), webhook "
        f"-> Switchboard on SQLite -> fake Bot API; model fails {faults.fail:.0%}, "
        f"stalls {faults.slow_seconds[0]:.0f}-{faults.slow_seconds[1]:.0f} s {faults.slow:.0%}; "
        f"{faults.duplicate:.0%} of updates delivered twice"
    )
    print(f"messages sent:            {sent} ({sent / seconds:.1f}/s)")
    print(f"duplicate deliveries:     {ledger.duplicates_sent}")
    print(
        f"answered:                 {answered} (of which {model.failed} with the apology for a "
        f"model failure; {model.stalled} after a stall)"
    )
    print(f"answered more than once:  {duplicated}")
    print(f"lost (no reply at all):   {lost}")
    print(
        f"latency to first reply:   p50 {percentile(latencies, 0.5):.0f} ms, "
        f"p99 {percentile(latencies, 0.99):.0f} ms, max {percentile(latencies, 1.0):.0f} ms"
    )
    print(f"webhook statuses:         {dict(sorted(ledger.statuses.items()))}")
    print(f"inbox rows by status:     {inbox}")
    verdict = "meets" if lost == 0 and duplicated == 0 else "MISSES"
    print(f"{verdict} the goal: zero lost, zero duplicated")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long users write")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    # The expected warnings (each model failure) would drown the report; errors still show.
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(soak(users=args.users, seconds=args.seconds, seed=args.seed))
