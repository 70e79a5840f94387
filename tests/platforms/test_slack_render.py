"""The Slack adapter's pure parts: Markdown → mrkdwn and Block Kit, splits, payload translation."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.platforms.slack import SERVICE_COMMANDS
from bot.platforms.slack_incoming import (
    action_to_incoming,
    command_event_id,
    command_to_incoming,
    event_to_incoming,
)
from bot.platforms.slack_render import (
    MESSAGE_BLOCKS,
    MESSAGE_CHARS,
    SECTION_CHARS,
    to_messages,
    to_mrkdwn,
    to_sections,
)
from handlers.feedback import feedback_buttons
from tests.conftest import ROOT

# --- rendering ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and __strong__", "*bold* and *strong*"),
        ("*italic* and _also_", "_italic_ and _also_"),
        ("***both***", "*_both_*"),
        ("~~gone~~", "~gone~"),
        ("[the docs](https://x.io/a?b=1&c=2)", "<https://x.io/a?b=1&c=2|the docs>"),
        ("<https://x.io>", "<https://x.io>"),
        ("**see [docs](https://x.io)**", "*see <https://x.io|docs>*"),
        ("[write](mailto:a@x.io)", "<mailto:a@x.io|write>"),
        # Markdown links must not smuggle Slack's pings and mentions in.
        ("[read this](!channel) now", "read this now"),
        ("[hi](@U0ADMIN) and [team](!subteam^S1)", "hi and team"),
        ("<!channel> <!here>", "&lt;!channel&gt; &lt;!here&gt;"),
        ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
        ("`x **not bold** < y`", "`x **not bold** &lt; y`"),
        ("# Title", "*Title*"),
        ("- one\n- two\n  - nested", "• one\n• two\n    ◦ nested"),
        ("1. first\n2. second", "1. first\n2. second"),
        ("> quoted **x**", "> quoted *x*"),
        ("2 * 3 * 4", "2 * 3 * 4"),
        ("```python\nif a < b:\n    **x**\n```", "```\nif a &lt; b:\n    **x**\n```"),
    ],
)
def test_markdown_becomes_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


def test_blank_lines_inside_code_blocks_survive() -> None:
    assert to_mrkdwn("```\na\n\nb\n```\nafter") == "```\na\n\nb\n```\nafter"


def test_long_code_block_is_split_into_closed_and_reopened_fences() -> None:
    code = "\n".join(f"row {i} <tag>" for i in range(900))
    sections = to_sections(f"Intro.\n```sql\n{code}\n```\nDone.")
    assert len(sections) > 3
    assert all(len(s) <= SECTION_CHARS for s in sections)
    assert all(s.count("```") % 2 == 0 for s in sections)
    assert sections[1].startswith("```\n") and sections[-1].endswith("```\nDone.")


def test_long_words_are_not_cut_inside_an_entity() -> None:
    sections = to_sections("&" * 5000)
    assert all(len(s) <= SECTION_CHARS for s in sections)
    assert all(s.replace("&amp;", "") == "" for s in sections)


def test_very_long_reply_becomes_several_messages_with_buttons_on_the_last() -> None:
    paragraphs = "\n\n".join(f"Paragraph {i}. " + "word " * 150 for i in range(400))
    messages = to_messages(paragraphs, buttons=feedback_buttons("Ev1"))
    assert len(messages) > 1
    for message in messages:
        sections = [b for b in message.blocks if b["type"] == "section"]
        assert len(message.blocks) <= MESSAGE_BLOCKS
        assert sum(len(b["text"]["text"]) for b in sections) <= MESSAGE_CHARS
    assert [b["type"] for b in messages[-1].blocks][-1] == "actions"
    assert all(b["type"] == "section" for m in messages[:-1] for b in m.blocks)
    shown = " ".join(b["text"]["text"] for m in messages for b in m.blocks if "text" in b)
    assert shown.split() == to_mrkdwn(paragraphs).split()


def test_buttons_carry_their_data() -> None:
    [message] = to_messages("hi", buttons=feedback_buttons("Ev9"))
    actions = message.blocks[-1]["elements"]
    assert [(a["text"]["text"], a["value"]) for a in actions] == [
        ("👍", "fb:up:Ev9"),
        ("👎", "fb:down:Ev9"),
    ]
    assert len({a["action_id"] for a in actions}) == 2


_lines = st.lists(
    st.one_of(
        st.text(alphabet="ab <&>*_`", max_size=120),
        st.just("```"),
        st.just(""),
        st.text(alphabet="xy ", min_size=200, max_size=4000),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(_lines)
def test_any_split_respects_limits_and_keeps_fences_balanced(lines: list[str]) -> None:
    sections = to_sections("\n".join(lines), limit=500)
    assert all(len(s) <= 500 for s in sections)
    assert all(s.count("```") % 2 == 0 for s in sections if s.startswith("```"))


# --- translation -------------------------------------------------------------------------


def callback(event: dict[str, Any], event_id: str = "Ev1") -> dict[str, Any]:
    return {"type": "event_callback", "event_id": event_id, "team_id": "T1", "event": event}


def test_mention_in_channel_starts_a_thread_conversation() -> None:
    event = {"type": "app_mention", "user": "U1", "channel": "C1", "ts": "10.1"}
    event["text"] = "<@U0BOT> what is <https://x.io|this> &amp; that?"
    incoming = event_to_incoming(callback(event), bot_user_id="U0BOT")
    assert incoming is not None
    assert (incoming.chat_id, incoming.thread_id, incoming.event_id) == ("C1", "10.1", "Ev1")
    assert incoming.text == "what is this (https://x.io) & that?"
    assert not incoming.is_private and incoming.workspace_id == "T1"


def test_mention_inside_a_thread_continues_it() -> None:
    event = {"type": "app_mention", "user": "U1", "channel": "C1", "ts": "10.9"}
    event |= {"thread_ts": "10.1", "text": "<@U0BOT> more"}
    incoming = event_to_incoming(callback(event), bot_user_id="U0BOT")
    assert incoming is not None and incoming.thread_id == "10.1" and incoming.text == "more"


def test_bare_mention_is_a_greeting() -> None:
    event = {"type": "app_mention", "user": "U1", "channel": "C1", "ts": "1.1", "text": "<@U0BOT>"}
    incoming = event_to_incoming(callback(event), bot_user_id="U0BOT")
    assert incoming is not None and incoming.text == "/start"


@pytest.mark.parametrize(
    ("extra", "thread"), [({}, None), ({"thread_ts": "5.1"}, "5.1")], ids=["dm", "dm-thread"]
)
def test_direct_messages(extra: dict[str, str], thread: str | None) -> None:
    event = {"type": "message", "channel_type": "im", "channel": "D1", "user": "U1"}
    event |= {"text": "hi", "ts": "5.2", **extra}
    incoming = event_to_incoming(callback(event), bot_user_id="U0BOT")
    assert incoming is not None
    assert (incoming.chat_id, incoming.thread_id, incoming.is_private) == ("D1", thread, True)


@pytest.mark.parametrize(
    "event",
    [
        {"type": "message", "channel_type": "im", "subtype": "message_changed"},
        {"type": "message", "channel_type": "im", "subtype": "message_deleted"},
        {"type": "message", "channel_type": "im", "subtype": "bot_message", "bot_id": "B1"},
        {"type": "message", "channel_type": "im", "bot_id": "B0BOT"},
        {"type": "message", "channel_type": "channel"},
        {"type": "app_mention", "channel": "D1"},  # the DM's message event answers it
        {"type": "reaction_added"},
    ],
)
def test_events_that_are_not_answered(event: dict[str, Any]) -> None:
    event = {"channel": "D1", "user": "U1", "text": "hi", "ts": "1.1"} | event
    assert event_to_incoming(callback(event), bot_user_id="U0BOT") is None


def test_slash_command_maps_to_the_router_command_with_a_stable_id() -> None:
    payload = {"command": "/sb-gen", "text": "a poem", "user_id": "U1", "channel_id": "C1"}
    payload |= {"trigger_id": "t1", "team_id": "T1"}
    incoming = command_to_incoming(payload, prefix="sb-")
    assert incoming is not None
    assert (incoming.text, incoming.thread_id, incoming.workspace_id) == ("/gen a poem", None, "T1")
    assert incoming.event_id == command_event_id(dict(payload)) == command_event_id(payload)
    assert incoming.event_id != command_event_id(payload | {"trigger_id": "t2"})
    assert command_to_incoming(payload | {"command": "/other"}, prefix="sb-") is None


def test_button_press_becomes_an_action_in_the_message_thread() -> None:
    body = {
        "type": "block_actions",
        "trigger_id": "trig",
        "user": {"id": "U1", "username": "ada", "team_id": "T1"},
        "channel": {"id": "C1"},
        "message": {"ts": "7.2", "thread_ts": "7.1"},
        "actions": [{"action_id": "switchboard:0", "value": "fb:up:Ev1", "action_ts": "8.0"}],
    }
    incoming = action_to_incoming(body)
    assert incoming is not None
    assert (incoming.action, incoming.text, incoming.thread_id) == ("fb:up:Ev1", "", "7.1")
    assert incoming.event_id == "act-trig" and incoming.workspace_id == "T1"
    foreign = body | {"actions": [{"action_id": "other", "value": "x"}]}
    assert action_to_incoming(foreign) is None


# --- manifest ----------------------------------------------------------------------------


def test_manifest_registers_every_command_event_and_interactivity() -> None:
    manifest = yaml.safe_load((ROOT / "slack-manifest.yml").read_text())
    commands = [c["command"] for c in manifest["features"]["slash_commands"]]
    assert commands == [f"/{name}" for name in SERVICE_COMMANDS]
    events = manifest["settings"]["event_subscriptions"]["bot_events"]
    assert {"app_mention", "message.im", "assistant_thread_started"} <= set(events)
    assert manifest["settings"]["interactivity"]["is_enabled"]
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"chat:write", "commands", "files:write", "assistant:write", "im:history"} <= scopes


def test_backticks_inside_a_code_block_do_not_close_it() -> None:
    # Found by the property test above: "ab```" is code (a fence must stand alone on its line).
    [section] = to_sections("```\nab```\n```")
    assert section == "```\nab`\u200b``\n```"
