"""A support desk's incoming webhook on 127.0.0.1: records the JSON bodies it is sent, and can
answer with errors first, as a desk that is down for a while does."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.local_http import serve_locally


@dataclass
class FakeDesk:
    # Statuses for the next requests, in order; then 200.
    failures: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/T000/B000/s3cr3t-desk-token"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/{team}/{bot}/{token}", self._hook)
        self._runner, self.port = await serve_locally(app)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.json()
        if self.failures:
            return web.Response(status=self.failures.pop(0), text="desk unavailable")
        self.received.append(body)
        return web.Response(text="ok")
