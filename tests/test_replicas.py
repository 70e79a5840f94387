"""Two `switchboard run` replicas behind a load balancer, sharing one PostgreSQL database and one
Telegram bot: every update is answered exactly once, in order within each conversation.

The test is the load balancer. It posts each user's updates to a random replica's webhook, in
order (the next one once the previous is acknowledged, as Telegram sends a chat's updates one
after another), many users at once, and redelivers some updates to the other replica. The fake
model echoes the prompt after a random delay, so answers identify their update and would
overtake each other if two replicas handled one conversation at once.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
import signal
import socket
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bot.migrate import upgrade_async
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.telegram_server import TOKEN, Call, FakeTelegramServer, message_update, user

USERS = 50
UPDATES_PER_USER = 20
# Unanswered updates a user may have at once: enough for successors to queue up behind an
# update in progress on the other replica, few enough to keep pollers off two shared cores.
WINDOW = 3
REDELIVER = 0.15
SECRET = "replica-test-secret"
REPLY = re.compile(r"^u(\d+)-m(\d+)$")


@dataclass
class Replica:
    process: asyncio.subprocess.Process
    url: str
    log: Path


@dataclass
class Answers:
    """The final messages the fake Telegram server received, per chat, in arrival order."""

    by_chat: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    total: int = 0

    def record(self, call: Call) -> None:
        match = REPLY.match(str(call.params.get("text", "")))
        if call.method == "sendMessage" and match and call.chat_id is not None:
            self.by_chat[call.chat_id].append(int(match.group(2)))
            self.total += 1


async def _poll(check: Callable[[], Awaitable[bool]], *, every: float, within: float) -> None:
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - the condition lives in the database
            await asyncio.sleep(every)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _start_replica(
    index: int, tmp_path: Path, *, database_url: str, telegram: str, model: str
) -> Replica:
    port = _free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path / f"replica{index}"),
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": telegram,
        "TELEGRAM_WEBHOOK_URL": "https://lb.example.test/telegram/webhook",
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "TEXT_PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-replica-test",
        "OPENAI_BASE_URL": model,
    }
    log = tmp_path / f"replica{index}.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=env, cwd=tmp_path, stderr=sink, stdout=sink
        )
    return Replica(process, f"http://127.0.0.1:{port}", log)


async def _stop(replica: Replica) -> int:
    if replica.process.returncode is None:
        replica.process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(replica.process.wait(), 30)
    except TimeoutError:
        replica.process.kill()
        return await replica.process.wait()


@dataclass
class LoadBalancer:
    replicas: list[Replica]
    http: aiohttp.ClientSession
    telegram: FakeTelegramServer
    answers: Answers
    redelivered: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(10_000))

    async def user(self, number: int, rng: random.Random) -> None:
        chat = 1000 + number
        redeliveries: list[asyncio.Task[None]] = []
        for step in range(UPDATES_PER_USER):
            backlog = step - WINDOW
            await self.telegram.wait_until(
                lambda backlog=backlog: len(self.answers.by_chat[chat]) > backlog, within=60
            )
            update = {
                "update_id": next(self._ids),
                **message_update(
                    f"/gen u{number:02d}-m{step:02d}",
                    chat_id=chat,
                    sender=user(chat, first_name=f"User{number}"),
                    message_id=step + 1,
                ),
            }
            first = rng.randrange(len(self.replicas))
            if rng.random() < REDELIVER:
                # A redelivery to the other replica: at once (racing) or a little later.
                other = (first + 1) % len(self.replicas)
                later = rng.choice([0.0, 0.2])
                redeliveries.append(asyncio.create_task(self.post(other, update, after=later)))
                self.redelivered += 1
            await self.post(first, update)
            await asyncio.sleep(rng.uniform(0, 0.02))
        await asyncio.gather(*redeliveries)

    async def post(self, index: int, update: dict[str, Any], *, after: float = 0.0) -> None:
        await asyncio.sleep(after)
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        url = self.replicas[index].url + "/telegram/webhook"
        for _ in range(100):
            try:
                async with self.http.post(url, json=update, headers=headers) as response:
                    if response.status == 200:
                        return
                    assert response.status == 503, await response.text()  # not ready yet
            except aiohttp.ClientConnectionError:
                pass  # a kept-alive connection the server just closed
            await asyncio.sleep(0.05)  # as Telegram does, deliver again a little later
        raise AssertionError(f"replica {index} never took update {update['update_id']}")


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    await upgrade_async(database_url)
    dsn = make_url(database_url).set(drivername="postgresql")
    db = await asyncpg.create_pool(dsn.render_as_string(hide_password=False), min_size=1)
    yield db
    await db.close()


async def _events_metric(http: aiohttp.ClientSession, replica: Replica) -> dict[str, float]:
    async with http.get(replica.url + "/metrics") as response:
        text = await response.text()
    # prometheus_client writes the labels sorted by name.
    found = re.findall(
        r'^switchboard_events_total\{outcome="(\w+)",platform="telegram"\} (\S+)$', text, re.M
    )
    return {outcome: float(value) for outcome, value in found}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_replicas_answer_every_update_once_and_in_order(
    database_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    telegram = FakeTelegramServer()
    await telegram.start()
    answers = Answers()
    telegram.listeners.append(answers.record)
    model = FakeOpenAIServer(echo=True, jitter=0.05)
    await model.start()
    replicas = [
        await _start_replica(
            i,
            tmp_path,
            database_url=database_url,
            telegram=telegram.base_url,
            model=model.openai_base_url,
        )
        for i in range(2)
    ]
    try:
        await telegram.wait_until(
            lambda: (
                len(telegram.calls_to("setWebhook")) >= 2
                or any(r.process.returncode is not None for r in replicas)
            ),
            within=90,
        )
        for replica in replicas:
            assert replica.process.returncode is None, replica.log.read_text()[-4000:]
        async with aiohttp.ClientSession() as http:
            balancer = LoadBalancer(replicas, http, telegram, answers)
            rng = random.Random(8)
            seeds = [rng.random() for _ in range(USERS)]
            await asyncio.gather(
                *(balancer.user(n, random.Random(seed)) for n, seed in enumerate(seeds))
            )
            total = USERS * UPDATES_PER_USER
            await telegram.wait_until(lambda: answers.total >= total, within=90)

            # Replies go out before "done" is committed: once nothing is pending, every
            # handling (a duplicate one included) has sent what it would ever send.
            async def settled() -> bool:
                return not await pool.fetchval("SELECT count(*) FROM inbox WHERE status <> 'done'")

            await _poll(settled, every=0.1, within=30)
            metrics = [await _events_metric(http, r) for r in replicas]

        expected = list(range(UPDATES_PER_USER))
        assert {chat: answers.by_chat[chat] for chat in answers.by_chat} == {
            1000 + n: expected for n in range(USERS)
        }
        assert answers.total == total
        assert await pool.fetchval("SELECT count(*) FROM inbox") == total
        turns = await pool.fetch("SELECT role, count(*) FROM messages GROUP BY role")
        assert {row["role"]: row["count"] for row in turns} == {"user": total, "assistant": total}
        # Both replicas did real work, and every redelivery was recognised as a duplicate (a
        # post retried after a dropped connection may have been one more).
        assert all(m.get("done", 0) > total / 4 for m in metrics), metrics
        assert sum(m.get("done", 0) for m in metrics) == total
        assert sum(m.get("duplicate", 0) for m in metrics) >= balancer.redelivered
    finally:
        codes = [await _stop(r) for r in replicas]
        await model.stop()
        await telegram.stop()
    for replica, code in zip(replicas, codes, strict=True):
        assert code == 0, replica.log.read_text()[-4000:]
