"""Runs a real TelegramPlatform against the fake Bot API server: long polling, or a webhook
served by uvicorn on 127.0.0.1. Used by the Telegram tests and by bench/telegram_dispatch.py."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import uvicorn
from starlette.applications import Starlette

from bot.http import build_http_app
from bot.platforms.telegram import (
    WEBHOOK_PATH,
    Limits,
    Pacing,
    Rate,
    TelegramConfig,
    TelegramPlatform,
)
from handlers.router import Command
from handlers.types import Dispatch
from tests.fakes.telegram_server import TOKEN, FakeTelegramServer

SECRET = "test-webhook-secret"
WEBHOOK_URL = "https://bot.example.test/telegram/webhook"
# Telegram's limits with the per-chat spacing shortened, so multi-part replies take no seconds.
TEST_LIMITS = Limits(
    per_chat=Rate(1, 0.01),
    per_group=Rate(20, 60.0),
    overall=Rate(30, 1.0),
    edits_per_chat=Rate(1, 0.01),
)
TEST_PACING = Pacing(draft_interval=0.05, edit_interval=0.05, action_interval=4.0, action_delay=0)


async def serve(app: Starlette) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    """``app`` on a free port of 127.0.0.1; returns the server, its task and its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, task, f"http://127.0.0.1:{port}"


class TelegramHarness:
    def __init__(
        self,
        server: FakeTelegramServer,
        *,
        webhook: bool = False,
        limits: Limits = TEST_LIMITS,
        pacing: Pacing = TEST_PACING,
        token: str = TOKEN,
    ) -> None:
        self.server = server
        self.webhook = webhook
        self.config = TelegramConfig(
            token=token,
            api_url=server.base_url,
            webhook_url=WEBHOOK_URL if webhook else None,
            webhook_secret=SECRET if webhook else None,
            limits=limits,
            pacing=pacing,
            poll_timeout=1,
            drain_timeout=5.0,
        )
        self.platform: TelegramPlatform | None = None
        self.url = ""
        self._running: asyncio.Task[None] | None = None
        self._http: tuple[uvicorn.Server, asyncio.Task[None]] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self, dispatch: Dispatch, *, commands: list[Command]) -> TelegramPlatform:
        platform = self.platform = TelegramPlatform(self.config, commands=commands)
        self._running = asyncio.create_task(platform.start(dispatch))
        if self.webhook:
            http, task, self.url = await serve(build_http_app(platform.routes()))
            self._http = (http, task)
            self._session = aiohttp.ClientSession()
        ready = "setWebhook" if self.webhook else "getUpdates"
        await self.server.wait_until(lambda: bool(self.server.calls_to(ready)) or self._failed())
        if self._running.done():
            self._running.result()
        return platform

    async def stop(self) -> None:
        if self.platform is not None:
            await self.platform.stop()
        if self._running is not None:
            await self._running
        if self._http is not None:
            self._http[0].should_exit = True
            await self._http[1]
        if self._session is not None:
            await self._session.close()

    async def post(self, update: dict[str, Any], *, secret: str | None = SECRET) -> int:
        """POST ``update`` to the webhook, as Telegram does; returns the HTTP status."""
        assert self._session is not None
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        async with self._session.post(
            self.url + WEBHOOK_PATH, json=update, headers=headers
        ) as response:
            return response.status

    async def deliver(self, update: dict[str, Any]) -> dict[str, Any]:
        """Deliver ``update`` (queued for polling or posted) and wait until it is handled."""
        assert self.platform is not None
        if self.webhook:
            update = {"update_id": update.get("update_id", _next_id()), **update}
            assert await self.post(update) == 200
        else:
            update = self.server.push_update(update)
            # The next getUpdates with a higher offset means the update was taken.
            await self.server.wait_until(lambda: self._confirmed(update["update_id"]))
        await self.platform.wait_idle()
        return update

    def _confirmed(self, update_id: int) -> bool:
        return any(
            (call.params.get("offset") or 0) > update_id
            for call in self.server.calls_to("getUpdates")
        )

    def _failed(self) -> bool:
        return self._running is not None and self._running.done()


_ids = iter(range(50_000, 10**9))


def _next_id() -> int:
    return next(_ids)
