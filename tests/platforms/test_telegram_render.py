"""Pure parts of the Telegram adapter: Markdown to HTML, splitting, the limiter, to_incoming."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiogram.types import Update

from bot.platforms.telegram import to_incoming
from bot.platforms.telegram.limiter import Kind, Limits, OutboundLimiter, Rate
from bot.platforms.telegram.render import CAPTION_LIMIT, MESSAGE_LIMIT, render, utf16_len
from tests.fakes.telegram_server import (
    BOT_ID,
    BOT_USERNAME,
    callback_update,
    message_update,
    user,
    visible_text,
)


@pytest.mark.parametrize(
    ("markdown", "html"),
    [
        ("**bold** and *it* and _it_", "<b>bold</b> and <i>it</i> and <i>it</i>"),
        ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
        ("snake_case_name and 2*3*4", "snake_case_name and 2*3*4"),
        ("`x<y` and ``a`b``", "<code>x&lt;y</code> and <code>a`b</code>"),
        (
            '[docs](https://e.org/?a=1&b="2")',
            '<a href="https://e.org/?a=1&amp;b=&quot;2&quot;">docs</a>',
        ),
        ("[click](javascript:alert(1))", "[click](javascript:alert(1))"),
        ("***both*** ~~gone~~ \\*literal\\*", "<b><i>both</i></b> <s>gone</s> *literal*"),
        ("**bold `code` bold**", "<b>bold </b><code>code</code><b> bold</b>"),
        ("# Title\n- one\n* two\n1. three", "<b>Title</b>\n• one\n• two\n1. three"),
        ("# **Title** and *it*", "<b>Title and <i>it</i></b>"),
        ("> quoted\n> more", "<blockquote>quoted\nmore</blockquote>"),
        (
            "```python\nif a < b:\n    pass\n```",
            '<pre><code class="language-python">if a &lt; b:\n    pass</code></pre>',
        ),
        ("```\nstill streaming", "<pre><code>still streaming</code></pre>"),
        ("<b>not a tag</b>", "&lt;b&gt;not a tag&lt;/b&gt;"),
    ],
)
def test_markdown_becomes_telegram_html(markdown: str, html: str) -> None:
    [part] = render(markdown)
    assert part.html == html
    # Whatever the renderer makes, Telegram's parser (as the fake server models it) accepts.
    assert visible_text(part.html) == part.text


def _long_reply() -> str:
    words = "Some words that make up a paragraph. " * 60
    code = "\n".join(f"value_{i} = compute({i})  # 😀 step {i}" for i in range(300))
    return f"{words}\n\n```python\n{code}\n```\n\nThat was the code. **Bold closing words.**"


def test_long_reply_splits_on_boundaries_and_reopens_the_code_block() -> None:
    parts = render(_long_reply())
    assert len(parts) >= 3
    for part in parts:
        assert utf16_len(part.text) <= MESSAGE_LIMIT
        assert visible_text(part.html) == part.text
    # The paragraph before the code goes alone; the code never shares a cut with prose.
    assert "<pre>" not in parts[0].html
    code_parts = [p for p in parts if "<pre>" in p.html]
    assert len(code_parts) >= 2
    assert all(p.html.count("<pre>") == p.html.count("</pre>") for p in code_parts)
    joined = "\n".join(p.text for p in parts)
    assert all(f"value_{i} = compute({i})" in joined for i in range(300))
    assert parts[-1].html.endswith("<b>Bold closing words.</b>")


def test_utf16_units_count_not_code_points() -> None:
    text = "😀" * 3000  # 6000 UTF-16 code units, 3000 code points
    parts = render(text)
    assert [utf16_len(p.text) for p in parts] == [4096, 1904]


def test_a_long_entity_is_closed_and_reopened() -> None:
    parts = render("**" + "word " * 1200 + "end**")
    assert len(parts) == 2
    assert all(p.html.startswith("<b>") and p.html.endswith("</b>") for p in parts)


def test_first_part_can_be_a_caption() -> None:
    parts = render("A caption sentence. " * 120, first_limit=CAPTION_LIMIT)
    assert utf16_len(parts[0].text) <= CAPTION_LIMIT
    assert len(parts) == 2 and utf16_len(parts[1].text) <= MESSAGE_LIMIT


async def test_limiter_spaces_messages_per_chat_and_group() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limits = Limits(per_chat=Rate(1, 1.0), per_group=Rate(20, 60.0), overall=Rate(30, 1.0))
    limiter = OutboundLimiter(limits, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        await limiter.acquire(1)
    assert now[0] == pytest.approx(2.0)
    for _ in range(21):
        await limiter.acquire(-100, group=True)
    # The 21st message to one group waits for the first to leave the one-minute window.
    assert now[0] >= 60.0
    start = now[0]
    for chat in range(31):
        await limiter.acquire(1000 + chat, kind=Kind.OTHER)
    assert now[0] - start == pytest.approx(1.0)


async def test_limiter_holds_a_chat_after_retry_after() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = OutboundLimiter(Limits(per_chat=None), clock=lambda: now[0], sleep=sleep)
    limiter.hold(7, 3)
    await limiter.acquire(8)
    assert now[0] == 0.0
    await limiter.acquire(7)
    assert now[0] == pytest.approx(3.0)


def _incoming(update: dict[str, Any]) -> Any:
    return to_incoming(Update.model_validate({"update_id": 77, **update}), BOT_USERNAME, BOT_ID)


GROUP = -1001
PHOTO = {"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}


@pytest.mark.parametrize(
    ("update", "text"),
    [
        (message_update("hello"), "hello"),
        (message_update("hello", chat_id=GROUP), None),
        (message_update(f"@{BOT_USERNAME} what is up?", chat_id=GROUP), "what is up?"),
        (message_update(f"hey @{BOT_USERNAME.upper()}, hi", chat_id=GROUP), "hey , hi"),
        (message_update("/help", chat_id=GROUP), "/help"),
        (message_update(f"/gen@{BOT_USERNAME} a poem", chat_id=GROUP), "/gen a poem"),
        (message_update("/help@another_bot", chat_id=GROUP), None),
        (
            message_update(
                "and then?",
                chat_id=GROUP,
                reply_to_message={
                    "message_id": 5,
                    "date": 0,
                    "chat": {"id": GROUP, "type": "supergroup"},
                    "from": {"id": BOT_ID, "is_bot": True, "first_name": "Switchboard"},
                    "text": "an answer",
                },
            ),
            "and then?",
        ),
        (message_update(f"@{BOT_USERNAME}", chat_id=GROUP), "/start"),
        (message_update("beep", sender=user(9, is_bot=True)), None),
        (message_update(None, new_chat_members=[user(5)], chat_id=GROUP), None),
        (message_update(None, photo=[PHOTO], caption="what is this?"), "what is this?"),
        (message_update(None, photo=[PHOTO], chat_id=GROUP), None),
    ],
)
def test_who_gets_answered(update: dict[str, Any], text: str | None) -> None:
    incoming = _incoming(update)
    assert (incoming.text if incoming else None) == text


def test_edited_messages_are_ignored() -> None:
    edited = message_update("changed")["message"]
    assert _incoming({"edited_message": {**edited, "edit_date": 1}}) is None


def test_translation_of_ids_topics_stickers_and_buttons() -> None:
    topic = _incoming(
        message_update(
            f"@{BOT_USERNAME} hi", chat_id=GROUP, message_thread_id=12, is_topic_message=True
        )
    )
    assert topic is not None
    assert (topic.event_id, topic.chat_id, topic.thread_id) == ("77", str(GROUP), "12")
    assert not topic.is_private
    # Replies in a plain supergroup carry a thread id too; they are no topic.
    reply = _incoming(message_update("/help", chat_id=GROUP, message_thread_id=3))
    assert reply is not None and reply.thread_id is None
    sticker = _incoming(
        message_update(
            None,
            sticker={
                "file_id": "s",
                "file_unique_id": "u",
                "type": "regular",
                "width": 1,
                "height": 1,
                "is_animated": False,
                "is_video": False,
            },
        )
    )
    assert sticker is not None and sticker.text == "" and sticker.attachments == ("a sticker",)
    press = _incoming(callback_update("fb:up:77"))
    assert press is not None and press.action == "fb:up:77" and press.text == ""
    assert re.fullmatch(r"\d+", press.event_id)
