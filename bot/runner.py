"""Starts the configured platforms side by side, with the HTTP app, and stops them together."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Protocol, runtime_checkable

from starlette.routing import BaseRoute

from bot.compose import build_app
from bot.http import HttpServer, build_http_app
from bot.settings import Settings
from handlers.types import Platform

log = logging.getLogger(__name__)


@runtime_checkable
class HasRoutes(Protocol):
    """A platform that receives events over HTTP (Telegram webhook, Slack HTTP mode)."""

    def routes(self) -> list[BaseRoute]: ...


def configured_platforms(settings: Settings) -> list[Platform]:
    """Every platform whose credentials are present. Each adapter is added here."""
    platforms: list[Platform] = []
    return platforms


async def run_platforms(settings: Settings, platforms: list[Platform]) -> int:
    app = build_app(settings)
    routes = [r for p in platforms if isinstance(p, HasRoutes) for r in p.routes()]
    http = HttpServer(build_http_app(routes), host=settings.http_host, port=settings.http_port)
    await http.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[object]] = [
        asyncio.create_task(p.start(app.dispatcher.dispatch)) for p in platforms
    ]
    log.info("started: %s", ", ".join(p.name for p in platforms))
    waiter: asyncio.Task[object] = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
    for platform in platforms:
        await platform.stop()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    waiter.cancel()
    await http.stop()
    await app.close()
    failed = [t for t in done if t is not waiter and not t.cancelled() and t.exception()]
    for task in failed:
        log.error("platform stopped with an error", exc_info=task.exception())
    return 1 if failed else 0
