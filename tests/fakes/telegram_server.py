"""A fake Telegram Bot API server: real HTTP on 127.0.0.1, so the real aiogram client runs.

It answers the methods Switchboard uses, records every call, checks HTML the way Telegram does
(allowed tags, nesting, escaping, lengths counted in UTF-16 after parsing), and can be told to
reject entities or to answer one call with a 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.local_http import serve_locally

BOT_ID = 4242
BOT_USERNAME = "switchboard_test_bot"
TOKEN = "123456789:TEST-abcdefghijklmnopqrstuvwxyz_0123"
MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024

_JSON_FIELDS = {"reply_markup", "allowed_updates", "commands", "reply_parameters", "entities"}
_INT_FIELDS = {"chat_id", "message_id", "message_thread_id", "offset", "limit", "timeout"}
_INT_FIELDS |= {"draft_id"}
_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre"}
_TAGS |= {"blockquote", "tg-spoiler", "span", "tg-emoji"}
_TOKEN = re.compile(
    r"<(/?)([a-zA-Z-]+)((?:\s+[a-z-]+=\"[^\"<>]*\")*)\s*>|&(?:lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);"
)


class BadRequest(Exception):
    pass


@dataclass(slots=True)
class Call:
    token: str
    method: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        return value if isinstance(value, int) else None


class FakeTelegramServer:
    def __init__(self, *, poll_wait: float = 0.2) -> None:
        self.calls: list[Call] = []
        self.listeners: list[Callable[[Call], None]] = []
        # Every HTML-formatted text is refused, as Telegram does for entities it cannot parse.
        self.reject_entities = False
        self.poll_wait = poll_wait
        self._rate_limited: dict[str, int] = {}
        self._failing: dict[str, tuple[int, str]] = {}
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1000)
        self._message_ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> str:
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner, self.port = await serve_locally(app)
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- scripting ---------------------------------------------------------------------------

    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates; it gets an update_id unless it has one."""
        update = {"update_id": next(self._update_ids), **update}
        self._updates.append(update)
        self._arrived.set()
        return update

    def rate_limit_next(self, method: str, *, retry_after: int = 1) -> None:
        """The next call of ``method`` gets a 429 with ``retry_after``."""
        self._rate_limited[method] = retry_after

    def fail_next(self, method: str, code: int, description: str) -> None:
        """The next call of ``method`` gets Telegram's error ``code`` with ``description``."""
        self._failing[method] = (code, description)

    def calls_to(self, *methods: str) -> list[Call]:
        return [c for c in self.calls if c.method in methods]

    async def wait_for(self, method: str, *, count: int = 1, within: float = 5.0) -> list[Call]:
        """The calls of ``method`` once there are at least ``count`` of them."""
        await self.wait_until(lambda: len(self.calls_to(method)) >= count, within=within)
        return self.calls_to(method)

    async def wait_until(self, condition: Callable[[], bool], *, within: float = 5.0) -> None:
        """Until ``condition()`` holds, checked after every call."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(condition), within)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- the API -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        call = await _read_call(request)
        self.calls.append(call)
        for listener in self.listeners:
            listener(call)
        await self._notify()
        failing = self._failing.pop(call.method, None)
        if failing is not None:
            return _error(*failing)
        retry_after = self._rate_limited.pop(call.method, None)
        if retry_after is not None:
            return _error(429, f"Too Many Requests: retry after {retry_after}", retry_after)
        answer = getattr(self, f"_{call.method}", None)
        if answer is None:
            return _error(404, "Not Found: method not found")
        try:
            result = await answer(call)
        except BadRequest as exc:
            return _error(400, f"Bad Request: {exc}")
        return web.json_response({"ok": True, "result": result})

    async def _getMe(self, call: Call) -> Any:
        return _bot_user()

    async def _getUpdates(self, call: Call) -> Any:
        offset = call.params.get("offset") or 0
        # An offset confirms every update below it, as on Telegram.
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if not self._updates:
            self._arrived.clear()
            wait = min(float(call.params.get("timeout") or 0), self.poll_wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), wait)
        return self._updates[: int(call.params.get("limit") or 100)]

    async def _setWebhook(self, call: Call) -> Any:
        return True

    async def _deleteWebhook(self, call: Call) -> Any:
        return True

    async def _setMyCommands(self, call: Call) -> Any:
        return True

    async def _sendChatAction(self, call: Call) -> Any:
        return True

    async def _answerCallbackQuery(self, call: Call) -> Any:
        return True

    async def _sendMessage(self, call: Call) -> Any:
        text = self._visible(call, "text", limit=MESSAGE_LIMIT)
        return self._message(call, text=text)

    async def _editMessageText(self, call: Call) -> Any:
        text = self._visible(call, "text", limit=MESSAGE_LIMIT)
        return {**self._message(call, text=text), "message_id": call.params["message_id"]}

    async def _sendMessageDraft(self, call: Call) -> Any:
        if not call.params.get("draft_id"):
            raise BadRequest("draft_id must be non-zero")
        self._visible(call, "text", limit=MESSAGE_LIMIT, required=False)
        return True

    async def _sendPhoto(self, call: Call) -> Any:
        if "photo" not in call.files:
            raise BadRequest("there is no photo in the request")
        caption = self._visible(call, "caption", limit=CAPTION_LIMIT, required=False)
        photo = [{"file_id": "p1", "file_unique_id": "u1", "width": 64, "height": 64}]
        return {**self._message(call, caption=caption), "photo": photo}

    def _visible(self, call: Call, name: str, *, limit: int, required: bool = True) -> str:
        raw = str(call.params.get(name) or "")
        if call.params.get("parse_mode") == "HTML" and raw:
            if self.reject_entities:
                raise BadRequest("can't parse entities: Unsupported start tag at byte offset 0")
            raw = visible_text(raw)
        if required and not raw.strip():
            raise BadRequest("message text is empty")
        if len(raw.encode("utf-16-le")) // 2 > limit:
            what = "message caption" if name == "caption" else "message"
            raise BadRequest(f"{what} is too long")
        return raw

    def _message(self, call: Call, **content: str) -> dict[str, Any]:
        chat_id = call.params["chat_id"]
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
            "from": _bot_user(),
            **{k: v for k, v in content.items() if v},
        }
        if call.params.get("message_thread_id"):
            message["message_thread_id"] = call.params["message_thread_id"]
            message["is_topic_message"] = True
        return message


def visible_text(markup: str) -> str:
    """The text Telegram would show for HTML ``markup``, or BadRequest as Telegram words it."""
    out: list[str] = []
    stack: list[str] = []
    position = 0
    for token in _TOKEN.finditer(markup):
        _plain(markup[position : token.start()], position, out)
        position = token.end()
        if token.group(2) is None:
            out.append(html.unescape(token.group(0)))
            continue
        closing, tag = token.group(1) == "/", token.group(2).lower()
        if tag not in _TAGS:
            raise BadRequest(f'can\'t parse entities: Unsupported start tag "{tag}"')
        if closing:
            if not stack or stack.pop() != tag:
                raise BadRequest(
                    f"can't parse entities: Unexpected end tag at byte offset {position}"
                )
            continue
        _check_nesting(tag, stack)
        stack.append(tag)
    _plain(markup[position:], position, out)
    if stack:
        raise BadRequest(
            f"can't parse entities: Can't find end tag corresponding to start tag \"{stack[-1]}\""
        )
    return "".join(out)


def _plain(text: str, offset: int, out: list[str]) -> None:
    bad = re.search(r"[<>&]", text)
    if bad:
        raise BadRequest(
            f"can't parse entities: Unexpected character {bad.group(0)!r} at byte offset "
            f"{offset + bad.start()}"
        )
    out.append(text)


def _check_nesting(tag: str, stack: list[str]) -> None:
    if "code" in stack or ("pre" in stack and tag != "code"):
        raise BadRequest("can't parse entities: pre and code entities can't contain other entities")
    if tag == "a" and "a" in stack:
        raise BadRequest("can't parse entities: nested links are not allowed")
    if tag == "code" and "a" in stack:
        raise BadRequest("can't parse entities: a link can't contain code")


async def _read_call(request: web.Request) -> Call:
    form = await request.post()
    params: dict[str, Any] = {}
    uploads: dict[str, bytes] = {}
    for name, value in form.items():
        if isinstance(value, web.FileField):
            uploads[name] = value.file.read()
        else:
            params[name] = _decode(name, str(value))
    files = {
        name: uploads[ref.removeprefix("attach://")]
        for name, ref in params.items()
        if isinstance(ref, str) and ref.startswith("attach://")
    }
    return Call(request.match_info["token"], request.match_info["method"], params, files)


def _decode(name: str, value: str) -> Any:
    if name in _JSON_FIELDS:
        return json.loads(value)
    if name in _INT_FIELDS:
        return int(value)
    return value


def _bot_user() -> dict[str, Any]:
    return {"id": BOT_ID, "is_bot": True, "first_name": "Switchboard", "username": BOT_USERNAME}


def _error(code: int, description: str, retry_after: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return web.json_response(body, status=code)


# --- updates, as Telegram would send them --------------------------------------------------


def user(user_id: int = 100, *, first_name: str = "Ada", is_bot: bool = False) -> dict[str, Any]:
    return {"id": user_id, "is_bot": is_bot, "first_name": first_name, "language_code": "en"}


def message_update(
    text: str | None = None,
    *,
    chat_id: int = 100,
    sender: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A ``message`` update; a negative ``chat_id`` is a supergroup."""
    chat_type = "private" if chat_id > 0 else "supergroup"
    message: dict[str, Any] = {
        "message_id": extra.pop("message_id", 1),
        "date": int(time.time()),
        "chat": {"id": chat_id, "type": chat_type},
        "from": sender or user(),
        **extra,
    }
    if text is not None:
        message["text"] = text
    return {"message": message}


def callback_update(data: str, *, chat_id: int = 100, message_id: int = 1) -> dict[str, Any]:
    chat_type = "private" if chat_id > 0 else "supergroup"
    return {
        "callback_query": {
            "id": f"cb{message_id}",
            "from": user(),
            "chat_instance": "ci",
            "data": data,
            "message": {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": chat_type},
                "from": _bot_user(),
                "text": "answer",
            },
        }
    }
