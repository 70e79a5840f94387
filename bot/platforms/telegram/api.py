"""Every outbound Bot API call: paced by the limiter, retried after a 429, and resent as plain
text when Telegram cannot parse the HTML."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramRetryAfter
from aiogram.methods import (
    AnswerCallbackQuery,
    EditMessageText,
    SendChatAction,
    SendMessage,
    SendMessageDraft,
    SendPhoto,
    TelegramMethod,
)
from aiogram.methods.base import Response
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    ReplyParameters,
)

from bot.platforms.telegram.incoming import Target
from bot.platforms.telegram.limiter import Kind, OutboundLimiter
from bot.platforms.telegram.render import Part
from handlers.types import Button

log = logging.getLogger(__name__)

T = TypeVar("T")
HTML = "HTML"
# Callback notices are plain text of at most 200 characters.
NOTICE_LIMIT = 200

# aiogram validates each answer as `Response[<result type>]`, and pydantic keeps parametrised
# generics only weakly: once collected, the next call builds the class and its validator again
# (a tenth of the CPU per message under load). Holding them keeps pydantic's cache warm.
_RESPONSE_TYPES = tuple(
    Response[method.__returning__]  # type: ignore[name-defined]
    for method in (
        AnswerCallbackQuery,
        EditMessageText,
        SendChatAction,
        SendMessage,
        SendMessageDraft,
        SendPhoto,
    )
)


class TelegramApi:
    def __init__(self, bot: Bot, limiter: OutboundLimiter, *, max_retries: int = 8) -> None:
        self._bot = bot
        self._limiter = limiter
        self._max_retries = max_retries

    async def send_text(
        self,
        target: Target,
        part: Part,
        *,
        buttons: Sequence[Button] = (),
        reply_to: int | None = None,
    ) -> int:
        """Send one message; returns its id."""

        def build(text: str, parse_mode: str | None) -> SendMessage:
            return SendMessage(
                chat_id=target.chat_id,
                message_thread_id=target.thread_id,
                text=text,
                parse_mode=parse_mode,
                reply_markup=_keyboard(buttons),
                reply_parameters=_quote(reply_to),
            )

        message = await self._formatted(target, build, part=part, kind=Kind.MESSAGE)
        return message.message_id

    async def edit_text(
        self, target: Target, message_id: int, *, part: Part, buttons: Sequence[Button] = ()
    ) -> None:
        def build(text: str, parse_mode: str | None) -> EditMessageText:
            return EditMessageText(
                chat_id=target.chat_id,
                message_id=message_id,
                text=text,
                parse_mode=parse_mode,
                reply_markup=_keyboard(buttons),
            )

        try:
            await self._formatted(target, build, part=part, kind=Kind.EDIT)
        except TelegramBadRequest as exc:
            # A repeated edit with the same text is harmless.
            if "message is not modified" not in exc.message:
                raise

    async def send_draft(self, target: Target, draft_id: int, *, part: Part) -> None:
        def build(text: str, parse_mode: str | None) -> SendMessageDraft:
            return SendMessageDraft(
                chat_id=target.chat_id,
                draft_id=draft_id,
                message_thread_id=target.thread_id,
                text=text,
                parse_mode=parse_mode,
            )

        await self._formatted(target, build, part=part, kind=Kind.OTHER)

    async def send_photo(
        self,
        target: Target,
        image: bytes,
        *,
        caption: Part | None,
        buttons: Sequence[Button] = (),
        reply_to: int | None = None,
    ) -> None:
        def build(text: str, parse_mode: str | None) -> SendPhoto:
            return SendPhoto(
                chat_id=target.chat_id,
                message_thread_id=target.thread_id,
                photo=BufferedInputFile(image, filename="image.png"),
                caption=text or None,
                parse_mode=parse_mode if text else None,
                reply_markup=_keyboard(buttons),
                reply_parameters=_quote(reply_to),
            )

        await self._formatted(target, build, part=caption or Part("", ""), kind=Kind.MESSAGE)

    async def chat_action(self, target: Target, action: str) -> None:
        """Best effort: an indicator that fails must not fail the reply."""
        method = SendChatAction(
            chat_id=target.chat_id, message_thread_id=target.thread_id, action=action
        )
        try:
            await self._call(target, method, kind=Kind.OTHER, retries=0)
        except TelegramAPIError as exc:
            log.debug("chat action failed in chat %s: %s", target.chat_id, exc.message)

    async def answer_callback(self, target: Target, text: str | None = None) -> None:
        """Best effort too: a stale button press (over 15 minutes old) cannot be answered."""
        if target.callback_id is None:
            return
        notice = text[:NOTICE_LIMIT] if text else None
        method = AnswerCallbackQuery(callback_query_id=target.callback_id, text=notice)
        try:
            await self._call(target, method, kind=Kind.OTHER, retries=1)
        except TelegramAPIError as exc:
            log.info("could not answer a button press in chat %s: %s", target.chat_id, exc.message)

    async def _formatted(
        self,
        target: Target,
        build: Callable[[str, str | None], TelegramMethod[T]],
        *,
        part: Part,
        kind: Kind,
    ) -> T:
        if not part.html:
            return await self._call(target, build("", None), kind=kind)
        try:
            return await self._call(target, build(part.html, HTML), kind=kind)
        except TelegramBadRequest as exc:
            if "can't parse entities" not in exc.message.lower():
                raise
            log.warning(
                "Telegram rejected the HTML of a reply in chat %s (%s); sending it as plain text",
                target.chat_id,
                exc.message,
            )
        return await self._call(target, build(part.text, None), kind=kind)

    async def _call(
        self, target: Target, method: TelegramMethod[T], *, kind: Kind, retries: int | None = None
    ) -> T:
        limit = self._max_retries if retries is None else retries
        attempt = 0
        while True:
            await self._limiter.acquire(target.chat_id, kind=kind, group=target.group)
            try:
                return await self._bot(method)
            except TelegramRetryAfter as exc:
                if attempt >= limit:
                    raise
                attempt += 1
                log.info(
                    "Telegram asked to wait %ss before %s in chat %s",
                    exc.retry_after,
                    method.__api_method__,
                    target.chat_id,
                )
                self._limiter.hold(target.chat_id, exc.retry_after)


def _keyboard(buttons: Sequence[Button]) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    row = [InlineKeyboardButton(text=b.label, callback_data=b.data) for b in buttons]
    return InlineKeyboardMarkup(inline_keyboard=[row])


def _quote(message_id: int | None) -> ReplyParameters | None:
    if message_id is None:
        return None
    # The user may have deleted their message by the time the answer is ready.
    return ReplyParameters(message_id=message_id, allow_sending_without_reply=True)
