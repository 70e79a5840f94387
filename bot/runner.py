"""Starts the configured platforms side by side, with the HTTP app, and stops them together."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from typing import Protocol, runtime_checkable

from starlette.routing import BaseRoute

from bot.compose import App, ConfigurationError, build_app
from bot.http import HttpServer, build_http_app
from bot.settings import Settings
from handlers.resume import resume_abandoned
from handlers.types import Incoming, Platform, Responder

log = logging.getLogger(__name__)


@runtime_checkable
class HasRoutes(Protocol):
    """A platform that receives events over HTTP (Telegram webhook, Slack HTTP mode)."""

    def routes(self) -> list[BaseRoute]: ...


@runtime_checkable
class Resumable(Protocol):
    """A platform that can answer an event again after a restart (it can open a responder
    for any chat from the stored Incoming)."""

    name: str

    def responder_for(self, incoming: Incoming) -> Responder: ...


async def _resume_forever(app: App, platforms: list[Platform], every: float) -> None:
    while True:
        for platform in platforms:
            if isinstance(platform, Resumable):
                try:
                    await resume_abandoned(
                        app.sessions,
                        app.dispatcher,
                        platform=platform.name,
                        responder_for=platform.responder_for,
                        idle_for=app.settings.inbox_resume_after,
                    )
                except Exception:
                    log.exception("resuming %s events failed", platform.name)
        await asyncio.sleep(every)


def configured_platforms(settings: Settings) -> list[Platform]:
    """Every platform whose credentials are present. Each adapter is added here."""
    platforms: list[Platform] = []
    if settings.telegram_bot_token is not None:
        platforms.append(_telegram(settings))
    if settings.slack_bot_token is not None:
        platforms.append(_slack(settings))
    return platforms


def _slack(settings: Settings) -> Platform:
    from bot.platforms.slack import SlackPlatform

    if settings.slack_app_token is None and settings.slack_signing_secret is None:
        raise ConfigurationError(
            "SLACK_BOT_TOKEN needs SLACK_SIGNING_SECRET (HTTP mode) "
            "or SLACK_APP_TOKEN (Socket Mode)"
        )
    return SlackPlatform.from_settings(settings)


def _telegram(settings: Settings) -> Platform:
    from bot.compose import build_router
    from bot.platforms.telegram import TelegramConfig, TelegramPlatform

    # The command menu comes from the same registry as /help.
    return TelegramPlatform(
        TelegramConfig.from_settings(settings), commands=build_router().commands
    )


def check_model_device(settings: Settings) -> None:
    """Refuses a MODEL_DEVICE that torch cannot use, which would fail every message instead.
    Judged only once torch is loaded (local models were built): importing it for this check
    alone would cost seconds when every model is remote."""
    torch = sys.modules.get("torch")
    device = settings.model_device
    if torch is None or not device.startswith("cuda"):
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if int(device.partition(":")[2] or 0) >= count:
        raise ConfigurationError(
            f"MODEL_DEVICE={device}, but torch {torch.__version__} sees {count} CUDA device(s): "
            "set MODEL_DEVICE=auto or cpu"
        )


def settle_heap() -> None:
    """Take what start-up loaded (modules, models, the ORM's and aiogram's classes) out of the
    garbage collector's view. Full collections then scan only what messages allocate instead of
    pausing the event loop over every long-lived object: a fifth more messages per second in
    bench/telegram_dispatch.py."""
    gc.collect()
    gc.freeze()


def http_routes(settings: Settings, app: App, platforms: list[Platform]) -> list[BaseRoute]:
    """The platforms' webhooks, and the help desk's answer endpoint when it has a token."""
    routes = [r for p in platforms if isinstance(p, HasRoutes) for r in p.routes()]
    if settings.handoff_answer_token is not None:
        from bot.handoff_answers import answer_routes

        token = settings.handoff_answer_token.get_secret_value()
        routes += answer_routes(app.sessions, token)
    return routes


async def run_platforms(settings: Settings, platforms: list[Platform]) -> int:
    app = build_app(settings)
    try:
        check_model_device(settings)
    except ConfigurationError:
        await app.close()
        raise
    if settings.warm_models:
        from bot.model_services import warm

        await warm(app.services)
    routes = http_routes(settings, app, platforms)
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
    settle_heap()
    background: list[asyncio.Task[None]] = [
        asyncio.create_task(
            _resume_forever(app, platforms, every=max(1.0, settings.inbox_resume_after / 2))
        )
    ]
    responders = {p.name: p.responder_for for p in platforms if isinstance(p, Resumable)}
    if responders:
        from bot.handoff_answers import AnswerCourier

        courier = AnswerCourier(app.sessions, responders)
        background.append(asyncio.create_task(courier.run_forever()))
    if settings.handoff_webhook_url is not None:
        from bot.handoff_desk import HandoffDesk

        desk = HandoffDesk(app.sessions, settings.handoff_webhook_url.get_secret_value())
        background.append(asyncio.create_task(desk.run_forever()))
    waiter: asyncio.Task[object] = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
    # Graceful stop: take no new events, let those in flight finish for a bounded time; what
    # is cut off stays pending in the inbox and is answered after the restart.
    log.info("stopping: %d message(s) in flight", app.dispatcher.in_flight)
    for job in background:
        job.cancel()
    for platform in platforms:
        await platform.stop()
    cancelled = await app.dispatcher.drain(grace=settings.shutdown_grace)
    if cancelled:
        log.warning("%d message(s) re-queued for the next start", cancelled)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, *background, return_exceptions=True)
    waiter.cancel()
    await http.stop()
    await app.close()
    errors = [t.exception() for t in done if t is not waiter and not t.cancelled()]
    failed = [e for e in errors if e is not None]
    for error in failed:
        if not isinstance(error, ConfigurationError):
            log.error("platform stopped with an error", exc_info=error)
    # A refused token is a setting to fix, not a bug: reported as bad settings are, in a line.
    misconfigured = [e for e in failed if isinstance(e, ConfigurationError)]
    if misconfigured:
        raise misconfigured[0]
    return 1 if failed else 0
