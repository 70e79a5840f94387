"""Renders replies into one Slack channel or thread: Block Kit, ephemerals, uploads, streams."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.platforms.slack_render import SECTION_CHARS, SlackMessage, to_messages, to_mrkdwn
from bot.platforms.slack_stream import (
    Destination,
    StreamSupport,
    StreamWriter,
    api_call,
    post_message,
    update_message,
)
from handlers.types import Button, Incoming, Reply

log = logging.getLogger(__name__)

THINKING = "is thinking…"
_IMAGE_TYPES = ((b"\x89PNG", "png"), (b"\xff\xd8", "jpg"), (b"GIF8", "gif"), (b"RIFF", "webp"))


def to_destination(incoming: Incoming) -> Destination:
    """Replies go where the event came from: its channel, in its thread if it has one."""
    return Destination(
        channel=incoming.chat_id,
        user=incoming.user_id,
        thread_ts=incoming.thread_id,
        team=incoming.workspace_id,
    )


def _image_name(image: bytes) -> str:
    extension = next((ext for magic, ext in _IMAGE_TYPES if image.startswith(magic)), "png")
    return f"image.{extension}"


class SlackResponder:
    def __init__(
        self,
        client: AsyncWebClient,
        destination: Destination,
        *,
        support: StreamSupport,
        interval: float = 1.0,
    ) -> None:
        self._client = client
        self._dest = destination
        self._support = support
        # chat.update and chat.appendStream run at most once per interval while streaming.
        self._interval = interval
        # The message of an answer that broke off: the next public text replaces it.
        self._unfinished: str | None = None

    async def send(self, reply: Reply) -> None:
        if reply.image is not None:
            await self._upload(reply.image, caption=reply.text or "", buttons=reply.buttons)
            return
        for message in to_messages(reply.text or "", buttons=reply.buttons):
            if reply.private:
                await self._post_ephemeral(message)
            elif self._unfinished is not None:
                await update_message(self._client, self._dest, self._unfinished, message)
                self._unfinished = None
            else:
                await post_message(self._client, self._dest, message)

    async def stream(self, chunks: AsyncIterator[str], *, buttons: tuple[Button, ...] = ()) -> str:
        writer = StreamWriter(self._client, self._dest, support=self._support)
        clock = asyncio.get_running_loop().time
        text, shown_at = "", -math.inf
        try:
            async for chunk in chunks:
                text += chunk
                if text.strip() and clock() - shown_at >= self._interval:
                    await writer.show(text.strip())
                    shown_at = clock()
        except Exception:
            # The model failed mid-answer: the apology that follows replaces the half answer,
            # which is not kept in the conversation either.
            self._unfinished = await writer.abandon()
            raise
        final = text.strip()
        if final:
            await writer.finish(final, buttons)
        return final

    def typing(self) -> AbstractAsyncContextManager[None]:
        return self._thinking() if self._dest.assistant_thread else nullcontext()

    @asynccontextmanager
    async def _thinking(self) -> AsyncIterator[None]:
        await self._set_status(THINKING)
        try:
            yield
        finally:
            await self._set_status("")

    async def _set_status(self, status: str) -> None:
        try:
            await self._client.assistant_threads_setStatus(
                channel_id=self._dest.channel, thread_ts=str(self._dest.thread_ts), status=status
            )
        except SlackApiError as exc:
            # Only assistant threads have a status; a plain DM thread refuses, which is fine.
            error = exc.response.get("error")
            log.debug("no assistant status in %s: %s", self._dest.channel, error)

    async def _post_ephemeral(self, message: SlackMessage) -> None:
        async with api_call("chat.postEphemeral"):
            await self._client.chat_postEphemeral(
                channel=self._dest.channel,
                user=self._dest.user,
                thread_ts=self._dest.thread_ts,
                text=message.text,
                blocks=list(message.blocks),
            )

    async def _upload(self, image: bytes, *, caption: str, buttons: tuple[Button, ...]) -> None:
        comment = to_mrkdwn(caption)
        inline = comment if len(comment) <= SECTION_CHARS else ""
        async with api_call("files.getUploadURLExternal"):
            await self._client.files_upload_v2(
                channel=self._dest.channel,
                thread_ts=self._dest.thread_ts,
                content=image,
                filename=_image_name(image),
                title=caption[:200] or "image",
                initial_comment=inline or None,
            )
        # A caption too long for the file's comment, and the buttons, follow as a message.
        rest = caption if comment and not inline else ""
        if rest or buttons:
            for message in to_messages(rest, buttons=buttons):
                await post_message(self._client, self._dest, message)
