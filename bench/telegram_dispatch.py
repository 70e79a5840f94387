"""Telegram webhook throughput: Switchboard's full path against a bare aiogram echo bot.

Both bots get the same load in the same run, from the same client, against the same fake Bot
API server: USERS simulated users, each sending PER_USER messages one after another (a user
waits for the answer before writing again). Switchboard runs its whole path: webhook, inbox,
ordering, user and conversation, history, the (instant, fake) text model, stored turns, Telegram
HTML, typing action and the answer with its buttons, on a migrated SQLite store. The outbound
limiter runs with its limits lifted: against Telegram, 30 messages a second in all is the cap by
design, which would measure Telegram's rules instead of our code.

Latency is from the webhook POST to the fake server receiving the answer's sendMessage.

    .venv/bin/python bench/telegram_dispatch.py [--users 200] [--per-user 10]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiogram import Bot, Dispatcher, Router  # noqa: E402
from aiogram.client.session.aiohttp import AiohttpSession  # noqa: E402
from aiogram.client.telegram import TelegramAPIServer  # noqa: E402
from aiogram.types import Message  # noqa: E402
from aiogram.webhook.aiohttp_server import SimpleRequestHandler  # noqa: E402
from aiohttp import web  # noqa: E402

from bot.compose import build_app  # noqa: E402
from bot.migrate import upgrade  # noqa: E402
from bot.platforms.telegram import WEBHOOK_PATH, Limits, Pacing  # noqa: E402
from bot.runner import settle_heap  # noqa: E402
from bot.settings import Settings  # noqa: E402
from handlers.feedback import feedback_buttons  # noqa: E402
from handlers.router import Command  # noqa: E402
from handlers.types import Dispatch, Incoming, Responder  # noqa: E402
from services.container import GenerationConfig, Services  # noqa: E402
from tests.fakes.telegram_server import Call, FakeTelegramServer, message_update, user  # noqa: E402
from tests.fakes.text import FakeTextGenerator  # noqa: E402
from tests.platforms.telegram_harness import SECRET, TelegramHarness  # noqa: E402

ECHO_TOKEN = "987654321:ECHO-abcdefghijklmnopqrstuvwxyz_0123"
NO_LIMITS = Limits(per_chat=None, per_group=None, overall=None, edits_per_chat=None)

Post = Callable[[dict[str, Any]], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    messages: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def line(self) -> str:
        return (
            f"{self.name:<12} {self.messages:>6} msgs {self.seconds:>7.2f} s"
            f" {self.rate:>8.1f} msg/s   p50 {self.percentile(0.5):>7.1f} ms"
            f"   p99 {self.percentile(0.99):>7.1f} ms"
        )


class Load:
    """Closed-loop users: each posts an update and waits for its answer before the next."""

    def __init__(self, server: FakeTelegramServer, token: str) -> None:
        self._waiting: dict[int, asyncio.Future[float]] = {}
        self._token = token
        server.listeners.append(self._on_call)

    def _on_call(self, call: Call) -> None:
        if call.token != self._token or call.method != "sendMessage" or call.chat_id is None:
            return
        future = self._waiting.pop(call.chat_id, None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())

    async def run(self, post: Post, *, users: int, per_user: int, first_id: int) -> Result:
        latencies: list[float] = []

        async def one_user(index: int) -> None:
            chat = 10_000 + index
            for k in range(per_user):
                update_id = first_id + index * per_user + k
                update = {
                    "update_id": update_id,
                    **message_update(f"hello {k}", chat_id=chat, sender=user(chat)),
                }
                answered = asyncio.get_running_loop().create_future()
                self._waiting[chat] = answered
                sent = time.perf_counter()
                status = await post(update)
                if status != 200:
                    raise RuntimeError(f"webhook answered {status}")
                latencies.append(await asyncio.wait_for(answered, 60) - sent)

        start = time.perf_counter()
        await asyncio.gather(*(one_user(i) for i in range(users)))
        return Result("", users * per_user, time.perf_counter() - start, latencies)


async def answer_without_store(incoming: Incoming, responder: Responder) -> None:
    """What the chat handler does with the platform, minus the middleware and the store."""

    async def chunks() -> AsyncIterator[str]:
        yield "Hello from the instant fake model."

    async with responder.typing():
        await responder.stream(chunks(), buttons=feedback_buttons(incoming.event_id))


def poster(session: aiohttp.ClientSession, url: str) -> Post:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}

    async def post(update: dict[str, Any]) -> int:
        for attempt in range(3):
            try:
                async with session.post(url, json=update, headers=headers) as response:
                    await response.read()
                    return response.status
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                # A kept-alive connection the server just closed; Telegram retries too, and the
                # update_id makes a repeat harmless.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    return post


async def echo_bot(server: FakeTelegramServer) -> tuple[str, Callable[[], Awaitable[None]]]:
    """The bare aiogram echo bot with aiogram's own webhook handler; returns its URL and stop."""
    router = Router()

    @router.message()
    async def echo(message: Message) -> None:
        await message.answer(message.text or "")

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    session = AiohttpSession(api=TelegramAPIServer.from_base(server.base_url))
    bot = Bot(ECHO_TOKEN, session=session)
    app = web.Application()
    SimpleRequestHandler(dispatcher, bot, handle_in_background=True, secret_token=SECRET).register(
        app, path="/webhook"
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop() -> None:
        await runner.cleanup()
        await bot.session.close()

    return f"http://127.0.0.1:{port}/webhook", stop


async def measure(
    name: str, server: FakeTelegramServer, token: str, url: str, *, users: int, per_user: int
) -> Result:
    load = Load(server, token)
    # Idle connections are dropped before uvicorn's 5 s keep-alive ends them under a request.
    connector = aiohttp.TCPConnector(limit=users, keepalive_timeout=3)
    async with aiohttp.ClientSession(connector=connector) as session:
        post = poster(session, url)
        # Warm-up: connections, first queries, imports on first use.
        await load.run(post, users=min(users, 20), per_user=2, first_id=1)
        result = await load.run(post, users=users, per_user=per_user, first_id=100_000)
    return Result(name, result.messages, result.seconds, result.latencies)


async def run_echo(server: FakeTelegramServer, *, users: int, per_user: int) -> Result:
    url, stop = await echo_bot(server)
    try:
        return await measure(
            "aiogram echo", server, ECHO_TOKEN, url, users=users, per_user=per_user
        )
    finally:
        await stop()


async def run_switchboard(server: FakeTelegramServer, *, users: int, per_user: int) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), _env_file=None)  # type: ignore[call-arg]
        await asyncio.to_thread(upgrade, settings.db_url)  # alembic runs its own loop
        services = Services(
            text=FakeTextGenerator(answer="Hello from the instant fake model."),
            generation=GenerationConfig(system_prompt="Be brief.", max_tokens=64, temperature=0),
        )
        app = build_app(settings, services=services)
        settle_heap()  # as `switchboard run` does once started
        try:
            return await run_adapter(
                "switchboard",
                server,
                app.dispatcher.dispatch,
                commands=app.router.commands,
                users=users,
                per_user=per_user,
            )
        finally:
            await app.close()


async def run_adapter(
    name: str,
    server: FakeTelegramServer,
    dispatch: Dispatch,
    *,
    commands: list[Command],
    users: int,
    per_user: int,
) -> Result:
    harness = TelegramHarness(server, webhook=True, limits=NO_LIMITS, pacing=Pacing())
    await harness.start(dispatch, commands=commands)
    try:
        url = harness.url + WEBHOOK_PATH
        return await measure(
            name, server, harness.config.token, url, users=users, per_user=per_user
        )
    finally:
        await harness.stop()


async def main(users: int, per_user: int) -> None:
    # Both bots run on a settled heap, the way `switchboard run` serves (bot/runner.py).
    settle_heap()
    server = FakeTelegramServer()
    await server.start()
    load = {"users": users, "per_user": per_user}
    # The echo bot runs first and last: the machine's load drifts during a run.
    echo = [await run_echo(server, **load)]
    full = await run_switchboard(server, **load)
    # The same adapter with a dispatch that skips the store: what the Telegram layer costs.
    layer = await run_adapter("telegram only", server, answer_without_store, commands=[], **load)
    echo.append(await run_echo(server, **load))
    await server.stop()

    echo_rate = sum(r.rate for r in echo) / len(echo)
    print(f"{users * per_user} webhook updates from {users} users, {per_user} each, one at a time")
    for result in (echo[0], full, layer, echo[1]):
        print(result.line())
    print("(telegram only = the adapter, renderer and limiter with no middleware and no store)")
    ratio = full.rate / echo_rate
    verdict = "meets" if ratio >= 0.5 else "misses"
    print(f"throughput ratio switchboard / echo (mean of both echo runs): {ratio:.2f}", end=" ")
    print(f"({verdict} the goal of 0.5)")
    print(f"throughput ratio telegram only / echo: {layer.rate / echo_rate:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--per-user", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.users, args.per_user))
