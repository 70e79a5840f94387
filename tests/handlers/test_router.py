"""Command detection: the full-width forms a Chinese keyboard types are commands too."""

from __future__ import annotations

import itertools

import pytest

from bot.compose import App
from handlers.router import split_command
from handlers.types import Incoming
from services.textforms import fold_width
from tests.fakes.models import FakeSentimentModel
from tests.fakes.responder import CollectingResponder

_ids = itertools.count(1)


async def say(app: App, text: str) -> CollectingResponder:
    responder = CollectingResponder()
    incoming = Incoming(
        platform="test", event_id=f"r{next(_ids)}", chat_id="c", user_id="u", text=text
    )
    await app.dispatcher.dispatch(incoming, responder)
    return responder


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/help", ("help", "")),
        ("／help", ("help", "")),
        ("／ｈｅｌｐ", ("help", "")),
        ("／ＨＥＬＰ＠ｍｙｂｏｔ", ("help", "")),
        ("／sentiment 很好", ("sentiment", "很好")),
        ("／sentiment\u3000很好", ("sentiment", "很好")),
        # The arguments reach the handler as typed, full-width forms included.
        ("／image 猫 －－ｎ ２", ("image", "猫 －－ｎ ２")),
        ("/image ＡＢＣ", ("image", "ＡＢＣ")),
        # A full-width slash opens kaomoji and plain text too: only a command name counts.
        ("／(ㄒoㄒ)／~~", None),
        ("／帮助", None),
        ("／ help", None),
        ("帮我画一只猫", None),
    ],
)
def test_full_width_commands_are_commands(text: str, expected: tuple[str, str] | None) -> None:
    assert split_command(text) == expected


def test_fold_width_folds_only_width_forms() -> None:
    assert fold_width("－－ｎ ２ ５１２ｘ５１２　／") == "--n 2 512x512 /"
    # NFKC would make these "2", "1" and "fi"; they are not what a keyboard's width changes.
    assert fold_width("²①ﬁ猫×") == "²①ﬁ猫×"


async def test_full_width_help_answers_with_the_commands(app: App) -> None:
    replies = await say(app, "／help")
    assert replies.texts[0].startswith("**Commands**")


async def test_full_width_command_passes_its_text_on_as_typed(
    model_app: App, fake_sentiment: FakeSentimentModel
) -> None:
    await say(model_app, "／sentiment 很好")
    assert fake_sentiment.batches == [["很好"]]
