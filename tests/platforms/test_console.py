"""The console platform: lines in, replies out, through the same dispatch path as the others."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bot.compose import App
from bot.platforms.console import ConsolePlatform
from handlers.middleware import NOT_SAVED
from tests.fakes.inbox import FlakyInbox


async def chat(app: App, lines: str, tmp_path: Path) -> str:
    out = io.StringIO()
    console = ConsolePlatform(
        stdin=io.StringIO(lines), stdout=out, image_dir=tmp_path / "images", user="ada"
    )
    await console.start(app.dispatcher.dispatch)
    return out.getvalue()


async def test_each_line_is_answered(app: App, tmp_path: Path) -> None:
    out = await chat(app, "hello\n\n/gen once more\n", tmp_path)
    assert out.count("Hello from the fake model.") == 2


async def test_a_line_the_store_refuses_is_reported_and_the_chat_goes_on(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky = FlakyInbox(app, monkeypatch, failures=3)  # the first line's three tries
    out = await chat(app, "hello\nhello again\n", tmp_path)
    assert out.index(NOT_SAVED) < out.index("Hello from the fake model.")
    assert out.count("Hello from the fake model.") == 1
    assert flaky.calls == 4


async def test_a_buttons_number_presses_it(app: App, tmp_path: Path) -> None:
    out = await chat(app, "hello\n/forget\n2\n/forget\n1\n1\n", tmp_path)
    assert "[1: Yes, delete everything]  [2: No, keep it]" in out
    assert out.count("Done: everything stored about you is deleted.") == 1
    # "2" pressed "No, keep it"; the last "1", with no buttons on screen, is just text.
    assert out.count("Hello from the fake model.") == 2
