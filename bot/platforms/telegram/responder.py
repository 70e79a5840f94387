"""Renders replies into one Telegram chat or topic: split text, photos with captions, streamed
previews, chat actions and button-press notices."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from aiogram.exceptions import TelegramAPIError

from bot.platforms.telegram.api import TelegramApi
from bot.platforms.telegram.incoming import Target
from bot.platforms.telegram.render import CAPTION_LIMIT, Part, render
from handlers.types import Button, Reply

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pacing:
    """How often live feedback is refreshed, in seconds."""

    draft_interval: float = 0.5
    # Telegram tolerates about one edit a second per chat.
    edit_interval: float = 1.0
    # A chat action shows for five seconds or until the next message.
    action_interval: float = 4.0
    # Telegram asks for chat actions only when an answer takes noticeable time; a quick one
    # arrives before the indicator would have shown.
    action_delay: float = 0.5


class TelegramResponder:
    def __init__(self, api: TelegramApi, target: Target, *, pacing: Pacing) -> None:
        self._api = api
        self._target = target
        self._pacing = pacing
        self._answered = False
        self._quoted = False
        # The preview message of an answer that broke off: the next text replaces it.
        self._unfinished: int | None = None

    async def send(self, reply: Reply) -> None:
        if reply.private and self._target.callback_id and not self._answered:
            await self._notice(reply.text)
        elif reply.image is not None:
            await self._send_photo(reply.image, reply.text, reply.buttons)
        elif reply.text:
            unfinished, self._unfinished = self._unfinished, None
            await self.send_over(unfinished, render(reply.text), reply.buttons)

    async def stream(self, chunks: AsyncIterator[str], *, buttons: tuple[Button, ...] = ()) -> str:
        preview = _Preview(self, self._api, target=self._target, pacing=self._pacing)
        text = ""
        try:
            async for chunk in chunks:
                text += chunk
                if preview.due() and text.strip():
                    await preview.update(text)
        except Exception:
            # The model failed mid-answer: the apology that follows replaces the half answer,
            # which is not kept in the conversation either.
            self._unfinished = preview.message_id
            raise
        final = text.strip()
        if final:
            await preview.finish(final, buttons)
        return final

    def typing(self) -> AbstractAsyncContextManager[None]:
        return self._indicator("typing")

    async def close(self) -> None:
        """A button press must be answered, or its button keeps spinning."""
        if self._target.callback_id and not self._answered:
            await self._notice(None)

    async def send_over(
        self, message_id: int | None, parts: Sequence[Part], buttons: Sequence[Button]
    ) -> None:
        """Send ``parts``, the first as an edit of ``message_id`` (a preview) if there is one."""
        if parts and message_id is not None:
            only = len(parts) == 1
            await self._api.edit_text(
                self._target, message_id, part=parts[0], buttons=buttons if only else ()
            )
            parts = parts[1:]
        await self.send_parts(parts, buttons)

    async def send_parts(self, parts: Sequence[Part], buttons: Sequence[Button]) -> int | None:
        """Send ``parts`` in order, the buttons under the last; returns the first message's id."""
        first: int | None = None
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            message_id = await self._api.send_text(
                self._target, part, buttons=buttons if last else (), reply_to=self._quote()
            )
            first = first or message_id
        return first

    async def _send_photo(self, image: bytes, text: str | None, buttons: Sequence[Button]) -> None:
        # Uploading a large image takes a moment of its own.
        await self._api.chat_action(self._target, "upload_photo")
        parts = render(text, first_limit=CAPTION_LIMIT) if text else []
        caption, rest = (parts[0], parts[1:]) if parts else (None, [])
        await self._api.send_photo(
            self._target,
            image,
            caption=caption,
            buttons=() if rest else buttons,
            reply_to=self._quote(),
        )
        await self.send_parts(rest, buttons)

    async def _notice(self, text: str | None) -> None:
        self._answered = True
        parts = render(text) if text else []
        await self._api.answer_callback(self._target, parts[0].text if parts else None)

    def _quote(self) -> int | None:
        """In groups the first message of an answer quotes the question."""
        if self._quoted:
            return None
        self._quoted = True
        return self._target.reply_to

    @asynccontextmanager
    async def _indicator(self, action: str) -> AsyncIterator[None]:
        task = asyncio.create_task(self._repeat(action))
        try:
            yield
        finally:
            task.cancel()

    async def _repeat(self, action: str) -> None:
        await asyncio.sleep(self._pacing.action_delay)
        while True:
            await self._api.chat_action(self._target, action)
            await asyncio.sleep(self._pacing.action_interval)


class _Preview:
    """The live view of a streamed reply: drafts in private chats; in groups, and when drafts
    fail, one message edited as the text grows. Previews are best effort; the final text is not."""

    def __init__(
        self, responder: TelegramResponder, api: TelegramApi, *, target: Target, pacing: Pacing
    ) -> None:
        self._responder = responder
        self._api = api
        self._target = target
        self._pacing = pacing
        self._drafts = not target.group
        self._draft_id = secrets.randbits(31) | 1  # must be non-zero
        self._message_id: int | None = None
        self._shown = ""
        # The first preview waits an interval too: a quick answer needs none.
        self._last = time.monotonic()

    def due(self) -> bool:
        interval = self._pacing.draft_interval if self._drafts else self._pacing.edit_interval
        return time.monotonic() - self._last >= interval

    async def update(self, text: str) -> None:
        # A reply longer than one message previews its first part; the rest comes at the end.
        parts = render(text)
        if not parts or parts[0].html == self._shown:
            return
        part = parts[0]
        try:
            await self._show(part)
        except TelegramAPIError as exc:
            log.info("streaming preview failed in chat %s: %s", self._target.chat_id, exc.message)
        self._shown = part.html
        self._last = time.monotonic()

    @property
    def message_id(self) -> int | None:
        """The message shown so far, if the preview is one (drafts are not)."""
        return self._message_id

    async def finish(self, text: str, buttons: Sequence[Button]) -> None:
        await self._responder.send_over(self._message_id, render(text), buttons)

    async def _show(self, part: Part) -> None:
        if self._drafts:
            try:
                await self._api.send_draft(self._target, self._draft_id, part=part)
                return
            except TelegramAPIError as exc:
                log.info(
                    "drafts unavailable in chat %s (%s); editing instead",
                    self._target.chat_id,
                    exc.message,
                )
                self._drafts = False
        if self._message_id is None:
            self._message_id = await self._responder.send_parts([part], ())
        else:
            await self._api.edit_text(self._target, self._message_id, part=part)
