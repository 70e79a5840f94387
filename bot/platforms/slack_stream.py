"""One streamed Slack answer: native chat streaming where the workspace allows it, else edits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.platforms.slack_render import SlackMessage, button_blocks, to_messages
from handlers.types import Button

log = logging.getLogger(__name__)

# chat.appendStream takes a bounded markdown_text per call; longer deltas go in pieces.
APPEND_CHARS = 10_000


class SlackError(RuntimeError):
    """A Web API call failed; ``error`` is Slack's code (``not_in_channel``, …)."""

    def __init__(self, method: str, error: str) -> None:
        super().__init__(f"Slack {method} failed: {error}")
        self.method = method
        self.error = error


@asynccontextmanager
async def api_call(method: str) -> AsyncIterator[None]:
    """Turns slack_sdk's error into ours, so no SDK type leaves the adapter."""
    try:
        yield
    except SlackApiError as exc:
        raise SlackError(method, str(exc.response.get("error"))) from exc


@dataclass(frozen=True, slots=True)
class Destination:
    """Where one event's replies go: a channel, and a thread in it or none."""

    channel: str
    user: str
    thread_ts: str | None = None
    team: str | None = None

    @property
    def assistant_thread(self) -> bool:
        # Slack's AI-assistant surface lives in threads of the app's DM.
        return self.channel.startswith("D") and self.thread_ts is not None


@dataclass(slots=True)
class StreamSupport:
    """Whether chat.startStream works here; the first refusal switches it off for good.

    Until one call has succeeded or been refused, answers that start together take turns at
    chat.startStream, so a workspace that refuses it is asked once, not once per answer.
    """

    native: bool = True
    known: bool = False
    probe: asyncio.Lock = field(default_factory=asyncio.Lock)


class StreamWriter:
    """Shows a growing answer: chat.startStream / appendStream / stopStream in a thread when
    the workspace allows them, else one posted message edited with chat.update."""

    def __init__(
        self, client: AsyncWebClient, destination: Destination, *, support: StreamSupport
    ) -> None:
        self._client = client
        self._dest = destination
        self._support = support
        self._native = support.native and destination.thread_ts is not None
        self._ts: str | None = None
        self._sent = 0

    async def show(self, text: str) -> None:
        """Show ``text``, the whole answer so far."""
        if self._ts is None:
            await self._open(text)
        elif self._native:
            await self._append(text)
        elif preview := to_messages(text)[:1]:
            await self._update(preview[0])

    async def finish(self, text: str, buttons: Sequence[Button]) -> None:
        if self._ts is None:
            await self._open(text)
        if self._native:
            await self._append(text)
            async with api_call("chat.stopStream"):
                await self._client.chat_stopStream(
                    channel=self._dest.channel,
                    ts=str(self._ts),
                    blocks=button_blocks(buttons) or None,
                )
            return
        first, *rest = to_messages(text, buttons=buttons) or [SlackMessage(text, ())]
        await self._update(first)
        for message in rest:
            await post_message(self._client, self._dest, message)

    async def abandon(self) -> str | None:
        """Ends an answer that broke off; the ts of the message shown so far, if any."""
        if self._ts is not None and self._native:
            try:
                async with api_call("chat.stopStream"):
                    await self._client.chat_stopStream(channel=self._dest.channel, ts=self._ts)
            except SlackError as exc:
                log.warning("could not stop the broken-off stream %s: %s", self._ts, exc.error)
        return self._ts

    async def _open(self, text: str) -> None:
        if self._native and await self._started(text[:APPEND_CHARS]):
            await self._append(text)
            return
        self._native = False
        preview = to_messages(text)[:1] or [SlackMessage(text, ())]
        self._ts = await post_message(self._client, self._dest, preview[0])

    async def _started(self, text: str) -> bool:
        """Opens a native stream; False when this workspace refuses them."""
        support = self._support
        if support.known:
            return support.native and await self._start_or_refuse(text)
        async with support.probe:
            if not support.native:
                return False
            started = await self._start_or_refuse(text)
            support.known = True
            return started

    async def _start_or_refuse(self, text: str) -> bool:
        try:
            await self._start(text)
        except SlackApiError as exc:
            log.info(
                "chat.startStream refused (%s); streaming with chat.update instead",
                exc.response.get("error"),
            )
            self._support.native = False
            return False
        return True

    async def _start(self, text: str) -> None:
        response = await self._client.chat_startStream(
            channel=self._dest.channel,
            thread_ts=str(self._dest.thread_ts),
            markdown_text=text,
            recipient_team_id=self._dest.team,
            recipient_user_id=self._dest.user,
        )
        self._ts, self._sent = str(response["ts"]), len(text)

    async def _append(self, text: str) -> None:
        while self._sent < len(text):
            delta = text[self._sent : self._sent + APPEND_CHARS]
            async with api_call("chat.appendStream"):
                await self._client.chat_appendStream(
                    channel=self._dest.channel, ts=str(self._ts), markdown_text=delta
                )
            self._sent += len(delta)

    async def _update(self, message: SlackMessage) -> None:
        await update_message(self._client, self._dest, str(self._ts), message)


async def post_message(
    client: AsyncWebClient, destination: Destination, message: SlackMessage
) -> str:
    """chat.postMessage into the destination's thread; returns the new message's ts."""
    async with api_call("chat.postMessage"):
        response = await client.chat_postMessage(
            channel=destination.channel,
            thread_ts=destination.thread_ts,
            text=message.text,
            blocks=list(message.blocks),
        )
    return str(response["ts"])


async def update_message(
    client: AsyncWebClient, destination: Destination, ts: str, message: SlackMessage
) -> None:
    """chat.update of the message ``ts`` in the destination's channel."""
    async with api_call("chat.update"):
        await client.chat_update(
            channel=destination.channel, ts=ts, text=message.text, blocks=list(message.blocks)
        )
