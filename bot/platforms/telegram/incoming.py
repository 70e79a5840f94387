"""Pure translation of Telegram updates into `Incoming`, and who gets answered at all.

Private chats: everything. Groups and supergroups: commands (``/cmd`` or ``/cmd@thisbot``),
messages that mention the bot, and replies to the bot's own messages; that is also all Telegram
delivers to a bot in privacy mode. Forum topics are conversations of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiogram.types import CallbackQuery, Message, Update

from handlers.types import Incoming, well_formed

PLATFORM = "telegram"

# What a user can send besides text; every other content type is a service message.
_CONTENT_NAMES = {
    "photo": "a photo",
    "sticker": "a sticker",
    "voice": "a voice message",
    "audio": "an audio file",
    "video": "a video",
    "video_note": "a video message",
    "animation": "a GIF",
    "document": "a file",
    "location": "a location",
    "venue": "a place",
    "contact": "a contact",
    "poll": "a poll",
    "dice": "a dice",
    "story": "a story",
    "live_photo": "a live photo",
    "checklist": "a checklist",
}


@dataclass(frozen=True, slots=True)
class Target:
    """Where the replies to one update go."""

    chat_id: int
    thread_id: int | None = None
    group: bool = False
    # The user's message, quoted by the first reply in a group so it is clear who is answered.
    reply_to: int | None = None
    # A button press, answered with a notice.
    callback_id: str | None = None


def to_incoming(update: Update, bot_username: str, bot_id: int) -> Incoming | None:
    """The `Incoming` for ``update``; ``None`` for updates the bot does not answer."""
    if update.message is not None:
        return _from_message(
            update.update_id, update.message, bot_username=bot_username, bot_id=bot_id
        )
    if update.callback_query is not None:
        return _from_callback(update.update_id, update.callback_query)
    return None  # edited messages, channel posts, membership changes…


def to_target(update: Update) -> Target | None:
    if update.message is not None:
        message = update.message
        group = message.chat.type != "private"
        return Target(
            message.chat.id,
            _thread(message),
            group=group,
            reply_to=message.message_id if group else None,
        )
    query = update.callback_query
    if query is None or query.message is None:
        return None
    chat = query.message.chat
    thread = _thread(query.message) if isinstance(query.message, Message) else None
    # The id goes back in answerCallbackQuery, which cannot encode a lone surrogate.
    callback_id = well_formed(query.id)
    return Target(chat.id, thread, group=chat.type != "private", callback_id=callback_id)


def target_for(incoming: Incoming) -> Target:
    """Where to answer a stored `Incoming` (an event resumed after a restart): the same chat and
    topic, without the quote or the button notice, which belong to the original update."""
    thread = int(incoming.thread_id) if incoming.thread_id else None
    return Target(int(incoming.chat_id), thread, group=not incoming.is_private)


def _from_message(
    update_id: int, message: Message, *, bot_username: str, bot_id: int
) -> Incoming | None:
    user = message.from_user
    kind = message.content_type
    if user is None or user.is_bot or (kind != "text" and kind not in _CONTENT_NAMES):
        return None
    text = message.text or message.caption or ""
    private = message.chat.type == "private"
    if not private:
        if not _addressed(message, text, bot_username=bot_username, bot_id=bot_id):
            return None
        text = _without_mention(text, bot_username)
    if not text and kind == "text":
        text = "/start"  # a bare "@bot": greet and point at /help
    return Incoming(
        platform=PLATFORM,
        event_id=str(update_id),
        chat_id=str(message.chat.id),
        thread_id=_str(_thread(message)),
        user_id=str(user.id),
        user_name=user.full_name or user.username,
        language=user.language_code,
        text=text,
        attachments=() if kind == "text" else (_CONTENT_NAMES[kind],),
        is_private=private,
    )


def _from_callback(update_id: int, query: CallbackQuery) -> Incoming | None:
    if query.message is None or not query.data or query.from_user.is_bot:
        return None
    chat = query.message.chat
    thread = _thread(query.message) if isinstance(query.message, Message) else None
    return Incoming(
        platform=PLATFORM,
        event_id=str(update_id),
        chat_id=str(chat.id),
        thread_id=_str(thread),
        user_id=str(query.from_user.id),
        user_name=query.from_user.full_name or query.from_user.username,
        language=query.from_user.language_code,
        text="",
        action=query.data,
        is_private=chat.type == "private",
    )


def _addressed(message: Message, text: str, *, bot_username: str, bot_id: int) -> bool:
    command = re.match(r"/\w+(?:@(\w+))?", text)
    if command:
        addressee = command.group(1)
        return addressee is None or addressee.lower() == bot_username.lower()
    if _mention(bot_username).search(text):
        return True
    replied = message.reply_to_message
    # In forums every message "replies" to the topic's creation; that is no reply to the bot.
    return (
        replied is not None
        and replied.forum_topic_created is None
        and replied.from_user is not None
        and replied.from_user.id == bot_id
    )


def _without_mention(text: str, bot_username: str) -> str:
    text = re.sub(rf"^(/\w+)@{re.escape(bot_username)}\b", r"\1", text, flags=re.IGNORECASE)
    text = _mention(bot_username).sub("", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def _mention(bot_username: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w)@{re.escape(bot_username)}\b", re.IGNORECASE)


def _thread(message: Message) -> int | None:
    # Plain supergroups carry a thread id on every reply chain; only forum topics (and topics in
    # private chats) are conversations of their own.
    return message.message_thread_id if message.is_topic_message else None


def _str(value: int | None) -> str | None:
    return None if value is None else str(value)
