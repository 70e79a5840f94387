"""Slack payloads (Events API, slash commands, block actions) → Incoming. Pure functions."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from bot.platforms.slack_render import ACTION_PREFIX
from handlers.types import Incoming

PLATFORM = "slack"
# Plain messages carry no subtype; these two are still a person writing to the bot. Every other
# subtype (bot_message, message_changed, message_deleted, channel_join, …) is not.
_USER_SUBTYPES = frozenset({"file_share", "thread_broadcast"})
_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")
_CHANNEL = re.compile(r"<#[A-Z0-9]+\|([^>]*)>")

Payload = Mapping[str, Any]


def _mapping(value: object) -> Payload:
    """A nested object of the payload, or an empty one where a malformed payload has
    something else (each translator then finds nothing to answer)."""
    return value if isinstance(value, Mapping) else {}


def _items(value: object) -> list[Payload]:
    """The objects of a nested list; anything else in it is skipped."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _unescape(text: str) -> str:
    """Slack's markup back to plain text: links unwrapped, entities decoded."""
    text = _LINK.sub(lambda m: m[1] if not m[2] or m[2] == m[1] else f"{m[2]} ({m[1]})", text)
    text = _CHANNEL.sub(r"#\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _strip_mention(text: str, *, bot_user_id: str | None) -> str:
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    else:
        text = re.sub(r"^\s*<@[A-Z0-9]+(?:\|[^>]*)?>", " ", text)
    return re.sub(r" {2,}", " ", text).strip()


def _is_from_a_person(event: Payload) -> bool:
    if event.get("bot_id") or event.get("bot_profile"):
        return False
    subtype = event.get("subtype")
    person = subtype is None or (isinstance(subtype, str) and subtype in _USER_SUBTYPES)
    return person and bool(event.get("user"))


def _name(value: object) -> str | None:
    """A display name, if the payload holds one (a forged body may put anything there)."""
    return value if isinstance(value, str) and value else None


def _team(payload: Payload, *fallbacks: object) -> str | None:
    """The workspace (team id) the payload came from, for allowlists and channel streaming."""
    team = payload.get("team_id") or next((f for f in fallbacks if f), None)
    return str(team) if team else None


def _files(event: Payload) -> tuple[str, ...]:
    return tuple(str(f["url_private"]) for f in _items(event.get("files")) if f.get("url_private"))


def event_to_incoming(body: Payload, *, bot_user_id: str | None) -> Incoming | None:
    """An Events API callback, or None when the bot should not answer it.

    Channels reach the bot through ``app_mention`` and DMs through ``message`` (channel_type
    im); the other pairing is dropped so a message that is both is answered once.
    """
    event = _mapping(body.get("event"))
    kind, channel = event.get("type"), str(event.get("channel") or "")
    # Without an event id the inbox cannot tell a retry from a new message.
    if not channel or not body.get("event_id") or not _is_from_a_person(event):
        return None
    if kind == "app_mention" and not channel.startswith("D"):
        thread: str | None = event.get("thread_ts") or event.get("ts")
        private = False
    elif kind == "message" and event.get("channel_type") == "im":
        thread = event.get("thread_ts")  # a DM is one conversation; a thread in it its own
        private = True
    else:
        return None
    text = _unescape(_strip_mention(str(event.get("text") or ""), bot_user_id=bot_user_id))
    return Incoming(
        platform=PLATFORM,
        event_id=str(body["event_id"]),
        chat_id=channel,
        user_id=str(event["user"]),
        # A bare mention is a greeting: answer with what the bot can do.
        text=text or ("/start" if kind == "app_mention" else ""),
        thread_id=str(thread) if thread else None,
        attachments=_files(event),
        is_private=private,
        workspace_id=_team(body, event.get("team")),
    )


def command_event_id(payload: Payload) -> str:
    """Slash commands have no event id; the same invocation always hashes alike."""
    keys = ("command", "text", "user_id", "channel_id", "trigger_id")
    raw = json.dumps([str(payload.get(k) or "") for k in keys])
    return "cmd-" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def command_to_incoming(payload: Payload, *, prefix: str = "") -> Incoming | None:
    """``/gen a poem`` (or ``/<prefix>gen``) → the router's ``/gen a poem`` in that channel."""
    name = str(payload.get("command") or "").lstrip("/")
    if not name.startswith(prefix) or len(name) == len(prefix):
        return None
    args = str(payload.get("text") or "").strip()
    channel, user = str(payload.get("channel_id") or ""), str(payload.get("user_id") or "")
    if not channel or not user:
        return None
    return Incoming(
        platform=PLATFORM,
        event_id=command_event_id(payload),
        chat_id=channel,
        user_id=user,
        user_name=_name(payload.get("user_name")),
        text=_unescape(f"/{name[len(prefix) :]} {args}".rstrip()),
        is_private=channel.startswith("D") or payload.get("channel_name") == "directmessage",
        workspace_id=_team(payload),
    )


def _our_action(body: Payload) -> Payload | None:
    for action in _items(body.get("actions")):
        if str(action.get("action_id", "")).startswith(ACTION_PREFIX) and action.get("value"):
            return action
    return None


def action_to_incoming(body: Payload) -> Incoming | None:
    """A press on one of our buttons → Incoming(action=<Button.data>), in the message's thread."""
    action = _our_action(body)
    container = _mapping(body.get("container"))
    channel = _mapping(body.get("channel")).get("id") or container.get("channel_id")
    user = _mapping(body.get("user"))
    if action is None or not channel or not user.get("id"):
        return None
    thread = _mapping(body.get("message")).get("thread_ts") or container.get("thread_ts")
    return Incoming(
        platform=PLATFORM,
        event_id="act-" + str(body.get("trigger_id") or action.get("action_ts")),
        chat_id=str(channel),
        user_id=str(user["id"]),
        user_name=_name(user.get("username")) or _name(user.get("name")),
        text="",
        thread_id=str(thread) if thread else None,
        action=str(action["value"]),
        is_private=str(channel).startswith("D"),
        workspace_id=_team(body, _mapping(body.get("team")).get("id"), user.get("team_id")),
    )
