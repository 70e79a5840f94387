"""What stands before slack-bolt on POST /slack/events.

Bolt parses a request body, and takes its payload apart, before it checks the signature, and a
body Slack never sends ("null", bad UTF-8, an ``event`` that is a string…) makes it fail with a
500 and a logged traceback. So the signature is checked first, and a payload bolt could not take
apart is refused with a 400: nobody without the signing secret reaches bolt at all, and nothing
bolt cannot read reaches it even with the secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_bolt.context import BoltContext
from slack_bolt.request.internals import build_context, parse_body
from slack_bolt.request.payload_utils import (
    to_action,
    to_command,
    to_event,
    to_message,
    to_options,
    to_shortcut,
    to_view,
)
from slack_sdk.signature import SignatureVerifier
from starlette.responses import PlainTextResponse, Response

# What bolt computes from every request before a listener runs.
_EXTRACTS = (to_action, to_command, to_event, to_message, to_options, to_shortcut, to_view)


class RequestGuard:
    def __init__(self, signing_secret: str) -> None:
        self._verifier = SignatureVerifier(signing_secret)

    def check(self, body: bytes, headers: Mapping[str, str]) -> Response | None:
        """The refusal for a request bolt must not see, or None to hand it to bolt."""
        if not self._signed(body, headers):
            return PlainTextResponse("invalid request signature", status_code=401)
        if not readable(body, headers.get("content-type")):
            return PlainTextResponse("not a Slack payload", status_code=400)
        return None

    def _signed(self, body: bytes, headers: Mapping[str, str]) -> bool:
        try:
            return self._verifier.is_valid_request(body, dict(headers))
        except ValueError:  # a timestamp that is not a number
            return False


# What bolt reads each of these keys as, wherever it appears: objects it calls .get() on, ids
# and types it matches with regular expressions. A payload holding anything else there is not
# one Slack sends, and bolt would fail on it instead of ignoring it.
_OBJECT: tuple[type, ...] = (dict,)
_SHAPES: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(
        ("event", "view", "container", "assistant_thread", "workflow_step", "function_data"),
        _OBJECT,
    ),
    **dict.fromkeys(("message", "previous_message"), (dict, type(None))),
    **dict.fromkeys(("user", "channel"), (str, dict)),
    **dict.fromkeys(("team", "enterprise"), (str, dict, type(None))),
    **dict.fromkeys(
        ("type", "subtype", "callback_id", "action_id", "block_id", "command", "channel_type"),
        (str,),
    ),
    **dict.fromkeys(("authorizations", "actions"), (list,)),
}
_LISTS_OF_OBJECTS = ("authorizations", "actions")
_MAX_DEPTH = 32


def readable(body: bytes, content_type: str | None) -> bool:
    """Whether bolt can parse ``body`` and take its payload apart as it does for a listener."""
    try:
        payload: Any = parse_body(body.decode(), content_type)
        if not isinstance(payload, dict) or not _well_shaped(payload, depth=0):
            return False
        # Bolt matches a button press by its action_id, which it takes to be there.
        if payload.get("type") == "block_actions" and not all(
            "action_id" in action for action in payload.get("actions", ())
        ):
            return False
        if not _actions_named(payload):
            return False
        build_context(BoltContext(), payload)
        for extract in _EXTRACTS:
            extract(payload)
    except (ValueError, LookupError, TypeError, AttributeError, RecursionError):
        # Bad UTF-8 or JSON, or a part of the wrong type where bolt expects an object.
        return False
    return True


def _actions_named(payload: dict[str, Any]) -> bool:
    """Bolt's block-action matcher indexes ``action_id`` directly; Slack always sends one."""
    actions = payload.get("actions")
    if not isinstance(actions, list):
        return True
    return all(isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions)


def _well_shaped(value: Any, *, depth: int) -> bool:
    if depth > _MAX_DEPTH:
        return False
    if isinstance(value, list):
        return all(_well_shaped(item, depth=depth + 1) for item in value)
    if not isinstance(value, dict):
        return True
    for key, item in value.items():
        shape = _SHAPES.get(key)
        if shape is not None and not isinstance(item, shape):
            return False
        if key in _LISTS_OF_OBJECTS and not all(isinstance(i, dict) for i in item):
            return False
        if not _well_shaped(item, depth=depth + 1):
            return False
    return True
