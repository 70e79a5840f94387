"""The Telegram platform: long polling by default, a webhook on the HTTP app when configured.

Updates are handled in tracked background tasks, one after another per conversation; ``stop()``
lets them finish. A webhook answers 200 once its update is stored and queued in its conversation
(handlers/admission.py), before any real work: so when Telegram sends a chat's next update,
perhaps to another replica, it cannot overtake this one. A conversation's next update is
likewise dispatched once the previous one is queued, not once it is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar, TypeVar

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import BotCommand, Update
from aiogram.utils.token import TokenValidationError
from aiohttp import InvalidURL
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from bot.model_services import ConfigurationError
from bot.platforms.telegram.api import TelegramApi
from bot.platforms.telegram.incoming import Target, target_for, to_incoming, to_target
from bot.platforms.telegram.limiter import Limits, OutboundLimiter
from bot.platforms.telegram.responder import Pacing, TelegramResponder
from bot.settings import Settings
from handlers import admission
from handlers.middleware import NotStored, say_not_saved
from handlers.router import Command
from handlers.types import Dispatch, Incoming

log = logging.getLogger(__name__)
_T = TypeVar("_T")

WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ["message", "callback_query"]
_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
_MAX_BACKOFF = 30.0
# A webhook answers at the latest after this long, stored or not: Telegram must not time out.
_ACK_WITHIN = 10.0


@dataclass(frozen=True, slots=True)
class TelegramConfig:
    token: str = field(repr=False)
    api_url: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    limits: Limits = field(default_factory=Limits)
    pacing: Pacing = field(default_factory=Pacing)
    poll_timeout: int = 25
    # How long stop() lets replies in progress finish (SHUTDOWN_GRACE).
    drain_timeout: float = 20.0

    @classmethod
    def from_settings(cls, settings: Settings) -> TelegramConfig:
        if settings.telegram_bot_token is None:
            raise ValueError("TELEGRAM_BOT_TOKEN is not set")
        secret = settings.telegram_webhook_secret
        return cls(
            token=settings.telegram_bot_token.get_secret_value(),
            api_url=settings.telegram_api_url,
            webhook_url=settings.telegram_webhook_url,
            webhook_secret=secret.get_secret_value() if secret else None,
            drain_timeout=settings.shutdown_grace,
        )

    @property
    def secret(self) -> str:
        """The webhook secret: the configured one, else one derived from the token, so every
        replica agrees on it without another setting (and it never reveals the token)."""
        if self.webhook_secret:
            return self.webhook_secret
        return hashlib.sha256(f"switchboard-webhook:{self.token}".encode()).hexdigest()


class TelegramPlatform:
    name: ClassVar[str] = "telegram"

    def __init__(self, config: TelegramConfig, *, commands: Sequence[Command] = ()) -> None:
        self._config = config
        self._commands = list(commands)
        self._stopping = asyncio.Event()
        # No connection is opened before the first call.
        self._bot = _make_bot(config)
        self._api = TelegramApi(self._bot, OutboundLimiter(config.limits))
        self._dispatch: Dispatch | None = None
        # (username, id) of the bot; set once start-up is done, webhooks wait for it.
        self._me: tuple[str, int] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Per conversation, the last update's "queued" signal (set when handled, at the latest).
        self._lanes: dict[tuple[str, str, str], asyncio.Event] = {}
        self._worker: asyncio.Task[None] | None = None

    def routes(self) -> list[BaseRoute]:
        if not self._config.webhook_url:
            return []
        return [Route(WEBHOOK_PATH, self._webhook, methods=["POST"])]

    async def start(self, dispatch: Dispatch) -> None:
        """Runs until ``stop()``: long polling, or registering the webhook and waiting. While
        the Bot API is unreachable or failing, start-up waits for it as polling does."""
        self._dispatch = dispatch
        await self._until_stopped(self._connect())
        if self._stopping.is_set():
            return
        if self._config.webhook_url:
            await self._stopping.wait()
        else:
            await self._until_stopped(self._poll())

    async def _connect(self) -> None:
        try:
            me = await _retrying("getMe", self._bot.get_me)
        except TelegramUnauthorizedError:
            # A setting to fix, not a bug: bot/runner.py reports it in one line.
            raise ConfigurationError(
                "TELEGRAM_BOT_TOKEN was refused by Telegram (401 Unauthorized): "
                "check it with @BotFather, or revoke it there and set the new one"
            ) from None
        await self._set_commands()
        self._me = (me.username or "", me.id)
        url = self._config.webhook_url
        if url:
            register = partial(
                self._bot.set_webhook,
                url,
                secret_token=self._config.secret,
                allowed_updates=ALLOWED_UPDATES,
            )
            try:
                await _retrying("setWebhook", register)
            except TelegramBadRequest as exc:
                # An HTTP (not HTTPS) URL, a port Telegram does not call, a secret with other
                # characters than A-Z a-z 0-9 _ -: settings to fix, said in one line.
                raise ConfigurationError(
                    f"Telegram refused the webhook ({exc.message}): check TELEGRAM_WEBHOOK_URL "
                    "and TELEGRAM_WEBHOOK_SECRET"
                ) from None
        else:
            # Telegram refuses getUpdates while a webhook is set.
            await _retrying("deleteWebhook", self._bot.delete_webhook)
        log.info("Telegram bot @%s started with %s", me.username, "a webhook" if url else "polling")

    async def stop(self) -> None:
        self._stopping.set()
        if self._worker is not None:
            # Ends the long poll before its session closes under it.
            self._worker.cancel()
            await asyncio.wait({self._worker})
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=self._config.drain_timeout)
            # What is cut off stays pending in the inbox and is answered after the restart.
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._bot.session.close()

    def responder_for(self, incoming: Incoming) -> TelegramResponder:
        """Replies into the chat and topic of ``incoming``; used for events resumed after a
        crash (see handlers/resume.py)."""
        return TelegramResponder(self._api, target_for(incoming), pacing=self._config.pacing)

    async def wait_idle(self) -> None:
        """Until every accepted update is handled (tests and the benchmark use it)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def _set_commands(self) -> None:
        menu = [
            BotCommand(command=c.name, description=_describe(c))
            for c in self._commands
            if _COMMAND_NAME.fullmatch(c.name)
        ]
        try:
            await self._bot.set_my_commands(menu)
        except TelegramAPIError as exc:
            # The menu is a convenience; the commands work without it.
            log.warning("could not set the Telegram command menu: %s", exc.message)

    async def _until_stopped(self, work: Coroutine[Any, Any, None]) -> None:
        worker = self._worker = asyncio.create_task(work)
        stopper = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({worker, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (worker, stopper):
            task.cancel()
        if worker.done() and not worker.cancelled():
            worker.result()  # re-raises what stopped the worker

    async def _poll(self) -> None:
        offset: int | None = None
        backoff = 1.0
        timeout = self._config.poll_timeout
        while True:
            poll = partial(
                self._bot.get_updates,
                offset=offset,
                timeout=timeout,
                allowed_updates=ALLOWED_UPDATES,
                request_timeout=timeout + 10,
            )
            try:
                updates = await _retrying("getUpdates", poll)
            except ClientDecodeError as exc:
                # One update aiogram cannot read (from a self-hosted Bot API server or a proxy)
                # fails the whole batch; it must neither stop the bot nor block those behind it.
                updates, past = _readable(exc.data, bot=self._bot)
                if past is None or past <= (offset or 0):
                    log.warning("getUpdates answered no new updates; retrying in %.0fs", backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                    continue
                offset = past
            backoff = 1.0
            for update in updates:
                # The next getUpdates confirms everything below offset.
                offset = max(offset or 0, update.update_id + 1)
                self._accept(update)

    async def _webhook(self, request: Request) -> Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self._config.secret.encode()):
            return PlainTextResponse("wrong secret token", status_code=401)
        if self._me is None or self._stopping.is_set():
            # Telegram retries later (or another replica takes it).
            return PlainTextResponse("not ready", status_code=503)
        try:
            update = Update.model_validate(await request.json(), context={"bot": self._bot})
        except ValueError:
            return PlainTextResponse("not a Telegram update", status_code=400)
        accepted = self._accept(update)
        if accepted is not None:
            queued, task = accepted
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queued.wait(), _ACK_WITHIN)
            if not queued.is_set() or (task.done() and not task.result()):
                # Not stored (yet): Telegram delivers it again, and the inbox answers it once.
                return PlainTextResponse("not stored, deliver again", status_code=503)
        return Response(status_code=200)

    def _accept(self, update: Update) -> tuple[asyncio.Event, asyncio.Task[bool]] | None:
        """Start handling ``update`` in the background; never blocks the caller. Returns, if it
        is dispatched, what is set once the update is stored and queued (or handled), and the
        task, whose result is False if the update could not be stored."""
        assert self._me is not None
        incoming = to_incoming(update, *self._me)
        target = to_target(update)
        if target is None:
            return None
        if incoming is None:
            if target.callback_id:
                self._track(self._answer_only(target))
            return None
        # Button presses need no order; messages of one conversation are handled in order.
        key = incoming.conversation_key
        after = None if incoming.action else self._lanes.get(key)
        queued = asyncio.Event()
        task = self._track(self._handle(incoming, target, after=after, queued=queued))
        # An update that never reaches the queue (a duplicate, a refusal) holds nothing up.
        task.add_done_callback(lambda _: queued.set())
        if not incoming.action:
            self._lanes[key] = queued
            task.add_done_callback(partial(self._leave_lane, key, queued))
        return queued, task

    def _track(self, work: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _leave_lane(
        self, key: tuple[str, str, str], queued: asyncio.Event, task: asyncio.Task[bool]
    ) -> None:
        if self._lanes.get(key) is queued:
            del self._lanes[key]

    async def _handle(
        self,
        incoming: Incoming,
        target: Target,
        *,
        after: asyncio.Event | None,
        queued: asyncio.Event,
    ) -> bool:
        """Dispatches the update; False if it could not be stored. A webhook's update is then
        refused, so that Telegram delivers it again; a polled one cannot come again, so the
        user is told to send it again."""
        assert self._dispatch is not None
        if after is not None:
            await after.wait()
        admission.watch(queued)
        responder = TelegramResponder(self._api, target, pacing=self._config.pacing)
        try:
            await self._dispatch(incoming, responder)
        except NotStored as exc:
            log.error("%s", exc)
            if self._config.webhook_url is None:
                await say_not_saved(responder)
            return False
        except Exception:
            log.exception("Telegram update %s failed", incoming.event_id)
        finally:
            await responder.close()
        return True

    async def _answer_only(self, target: Target) -> None:
        await self._api.answer_callback(target)


async def _retrying(method: str, call: Callable[[], Awaitable[_T]]) -> _T:
    """``call()``, tried again with a doubling pause while the Bot API is unreachable or failing:
    a bot started, or polling, during an outage waits for Telegram instead of stopping the other
    platforms with it."""
    backoff = 1.0
    while True:
        try:
            return await call()
        except TelegramRetryAfter as exc:
            log.warning("%s rate-limited; retrying in %ss", method, exc.retry_after)
            await asyncio.sleep(exc.retry_after)
        except (TelegramNetworkError, TelegramServerError, TelegramConflictError) as exc:
            # A conflict: another process polls this bot (a rolling deploy's old replica) or a
            # webhook is still set; it passes, or the log says what to fix.
            if isinstance(exc.__cause__, InvalidURL):
                raise  # TELEGRAM_API_URL: no wait makes it right
            log.warning("%s failed (%s); retrying in %.0fs", method, exc.message, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)


def _readable(data: Any, *, bot: Bot) -> tuple[list[Update], int | None]:
    """The valid updates of a getUpdates answer that aiogram refused as a whole, and the offset
    past every update in it, valid or not (None when it holds no update ids at all)."""
    result = data.get("result") if isinstance(data, dict) else None
    updates: list[Update] = []
    past: int | None = None
    for raw in result if isinstance(result, list) else []:
        update_id = raw.get("update_id") if isinstance(raw, dict) else None
        if type(update_id) is not int:
            continue
        past = max(past or 0, update_id + 1)
        try:
            updates.append(Update.model_validate(raw, context={"bot": bot}))
        except ValidationError:
            log.warning("skipped Telegram update %s: not a valid update", update_id)
    return updates, past


def _make_bot(config: TelegramConfig) -> Bot:
    if config.api_url:
        session = AiohttpSession(api=TelegramAPIServer.from_base(config.api_url))
    else:
        session = AiohttpSession()
    try:
        return Bot(config.token, session=session)
    except TokenValidationError:
        # aiogram's message says where, not what to fix; the token itself is never shown.
        raise ConfigurationError(
            "TELEGRAM_BOT_TOKEN is not a Telegram bot token: expected the "
            "<bot id>:<secret> that @BotFather gives"
        ) from None


def _describe(command: Command) -> str:
    text = f"{command.args} — {command.summary}" if command.args else command.summary
    return text[:256]
