"""Slack: a slack-bolt AsyncApp over HTTP (POST /slack/events) or Socket Mode.

Every listener acknowledges Slack at once and hands the work to a tracked background task, so
the 3-second ack deadline never waits on a model. Exactly-once answering comes from the inbox:
a retried or redelivered event keeps its event id, and the inbox drops the second copy.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from bot.platforms.slack_guard import RequestGuard
from bot.platforms.slack_incoming import action_to_incoming, command_to_incoming, event_to_incoming
from bot.platforms.slack_render import ACTION_PREFIX
from bot.platforms.slack_responder import SlackResponder, to_destination
from bot.platforms.slack_stream import StreamSupport
from handlers.middleware import NotStored, say_not_saved
from handlers.types import Dispatch, Incoming

if TYPE_CHECKING:
    from bot.settings import Settings

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
# Slack caps a message at 40,000 characters; with its blocks repeating the text, JSON-escaped,
# an event stays well under this.
MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_API_URL = "https://slack.com/api/"
# One slash command per service; the router answers those it does not have yet.
SERVICE_COMMANDS = (
    "gen",
    "image",
    "sentiment",
    "ask",
    "recommend",
    "buy",
    "purchases",
    "reset",
    "forget",
    "stats",
    "help",
)
SUGGESTED_PROMPTS = (
    {"title": "What can you do?", "message": "/help"},
    {"title": "Write a haiku", "message": "Write a haiku about the sea."},
    {"title": "Explain simply", "message": "Explain in three sentences how a rainbow forms."},
)
# 429s wait their Retry-After and try again; a reply is never dropped for a rate limit.
RATE_LIMIT_RETRIES = 10


def build_client(token: str, *, api_url: str | None = None) -> AsyncWebClient:
    return AsyncWebClient(
        token=token,
        base_url=api_url or DEFAULT_API_URL,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(),
            AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
        ],
    )


class SlackPlatform:
    name: ClassVar[str] = "slack"

    def __init__(
        self,
        *,
        bot_token: str,
        signing_secret: str = "",
        app_token: str | None = None,
        api_url: str | None = None,
        command_prefix: str = "",
        commands: Sequence[str] = SERVICE_COMMANDS,
        stream_interval: float = 1.0,
    ) -> None:
        if not app_token and not signing_secret:
            raise ValueError("Slack HTTP mode needs a signing secret (or an app token)")
        self._client = build_client(bot_token, api_url=api_url)
        self._app = AsyncApp(
            client=self._client,
            signing_secret=signing_secret,
            request_verification_enabled=bool(signing_secret),
            # Listeners only ack and start a task, so running them before the response is fast
            # and makes every accepted event tracked by the time Slack gets its 200.
            process_before_response=True,
            attaching_conversation_kwargs_enabled=False,
            logger=logging.getLogger("slack_bolt"),
        )
        self._app_token = app_token
        self._signing_secret = signing_secret
        self._prefix = command_prefix
        self._commands = tuple(commands)
        self._interval = stream_interval
        self._support = StreamSupport()
        self._dispatch: Dispatch | None = None
        self._ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._register()

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackPlatform:
        def secret(value: Any) -> str:
            return str(value.get_secret_value()) if value is not None else ""

        return cls(
            bot_token=secret(settings.slack_bot_token),
            signing_secret=secret(settings.slack_signing_secret),
            app_token=secret(settings.slack_app_token) or None,
            api_url=settings.slack_api_url,
            command_prefix=settings.slack_command_prefix,
        )

    @property
    def command_names(self) -> list[str]:
        """The slash commands this app answers, as registered in the Slack app."""
        return [f"/{self._prefix}{name}" for name in self._commands]

    def routes(self) -> list[BaseRoute]:
        """POST /slack/events in HTTP mode; Socket Mode needs no inbound HTTP."""
        if self._app_token:
            return []
        handler = AsyncSlackRequestHandler(self._app)
        guard = RequestGuard(self._signing_secret)

        async def events(request: Request) -> Response:
            if self._stopping.is_set():
                # Not acked, so Slack delivers it again: to another replica, or after restart.
                return Response(status_code=503)
            # The body is read before its signature can be checked: only a bounded one, so
            # that an unsigned flood cannot take the memory. Slack's payloads are mostly a few
            # kilobytes and always declare their length (uvicorn reads no more than that).
            declared = request.headers.get("content-length", "")
            if not declared.isdigit():
                return PlainTextResponse("length required", status_code=411)
            if int(declared) > MAX_BODY_BYTES:
                return PlainTextResponse("payload too large", status_code=413)
            refusal = guard.check(await request.body(), request.headers)
            if refusal is not None:
                return refusal
            return await handler.handle(request)

        return [Route(EVENTS_PATH, events, methods=["POST"])]

    async def start(self, dispatch: Dispatch) -> None:
        """Runs until stop(): serves Socket Mode, or waits while the HTTP route serves."""
        self._dispatch = dispatch
        self._ready.set()
        if not self._app_token:
            await self._stopping.wait()
            return
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

        socket = AsyncSocketModeHandler(self._app, self._app_token, web_client=self._client)
        await socket.connect_async()  # type: ignore[no-untyped-call]
        log.info("Slack Socket Mode connected")
        try:
            await self._stopping.wait()
        finally:
            await socket.close_async()  # type: ignore[no-untyped-call]

    async def stop(self) -> None:
        """Takes no new events. Those in flight are finished, or cut off and left pending in
        the inbox, by the dispatcher's drain (see bot.runner)."""
        self._stopping.set()

    async def drain(self) -> None:
        """Wait until every accepted event has been answered."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    def _register(self) -> None:
        app = self._app
        app.event("app_mention")(self._on_event)
        app.event("message")(self._on_event)
        app.event("assistant_thread_started")(self._on_assistant_thread)
        for command in self.command_names:
            app.command(command)(self._on_command)
        app.action(re.compile(f"^{re.escape(ACTION_PREFIX)}"))(self._on_action)
        # Any other subscribed event is acknowledged: an unhandled one gets 404, which Slack
        # retries and counts against the app. Bolt runs the first matching listener only.
        app.event(re.compile(".*"))(self._ignore)

    async def _on_event(self, body: dict[str, Any], context: AsyncBoltContext) -> None:
        incoming = event_to_incoming(body, bot_user_id=context.bot_user_id)
        if incoming is not None:
            self._spawn(incoming)

    async def _on_command(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        incoming = command_to_incoming(body, prefix=self._prefix)
        if incoming is not None:
            self._spawn(incoming)
        # in_channel shows the user's command above the answer that follows.
        await ack(response_type="in_channel")

    async def _on_action(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        incoming = action_to_incoming(body)
        if incoming is not None:
            self._spawn(incoming)
        await ack()

    async def _on_assistant_thread(self, body: dict[str, Any]) -> None:
        thread = (body.get("event") or {}).get("assistant_thread") or {}
        if thread.get("channel_id") and thread.get("thread_ts"):
            prompts = self._suggest_prompts(thread["channel_id"], thread["thread_ts"])
            self._track(prompts, label="assistant_thread_started")

    async def _ignore(self) -> None:
        return None

    async def _suggest_prompts(self, channel: str, thread_ts: str) -> None:
        await self._client.assistant_threads_setSuggestedPrompts(
            channel_id=channel, thread_ts=thread_ts, prompts=list(SUGGESTED_PROMPTS)
        )

    def responder_for(self, incoming: Incoming) -> SlackResponder:
        """Replies into the event's channel and thread (also for events resumed after a crash)."""
        return SlackResponder(
            self._client,
            to_destination(incoming),
            support=self._support,
            interval=self._interval,
        )

    def _spawn(self, incoming: Incoming) -> None:
        responder = self.responder_for(incoming)

        async def work() -> None:
            await self._ready.wait()
            assert self._dispatch is not None
            try:
                await self._dispatch(incoming, responder)
            except NotStored as exc:
                # Slack has its ack already and will not deliver the event again.
                log.error("%s", exc)
                await say_not_saved(responder)

        self._track(work(), label=incoming.event_id)

    def _track(self, work: Coroutine[Any, Any, None], *, label: str) -> None:
        task = asyncio.create_task(self._guard(work, label=label))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guard(work: Coroutine[Any, Any, None], *, label: str) -> None:
        try:
            await work
        except Exception:
            # The dispatcher already apologised in chat where it could; keep the detail.
            log.exception("Slack work for %s failed", label)
