"""/image through the dispatcher: options, limits, refusals and outages as plain messages."""

from __future__ import annotations

import itertools

import pytest

from bot.compose import App
from handlers.images import ImageRequest, parse_image_args
from handlers.types import Incoming
from services.container import ImageConfig
from tests.fakes.models import FakeImageGenerator
from tests.fakes.responder import CollectingResponder

_ids = itertools.count(1)
CONFIG = ImageConfig(default_size="512x512", max_n=4, max_side=1024, max_prompt_chars=100)


async def say(app: App, text: str) -> CollectingResponder:
    responder = CollectingResponder()
    incoming = Incoming(
        platform="test", event_id=f"i{next(_ids)}", chat_id="c", user_id="u", text=text
    )
    await app.dispatcher.dispatch(incoming, responder)
    return responder


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("a red fox", ImageRequest("a red fox", "512x512", 1)),
        ("a red fox --size 768x512 --n 2", ImageRequest("a red fox", "768x512", 2)),
        ("--n=3 a red --size=64X64 fox", ImageRequest("a red fox", "64x64", 3)),
        ("a fox -n 4", ImageRequest("a fox", "512x512", 4)),
    ],
)
def test_options_are_taken_from_anywhere_in_the_prompt(args: str, expected: ImageRequest) -> None:
    assert parse_image_args(args, CONFIG) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("猫 --n ２", ImageRequest("猫", "512x512", 2)),
        ("猫 －－ｎ ２", ImageRequest("猫", "512x512", 2)),
        ("猫 －ｎ　３", ImageRequest("猫", "512x512", 3)),
        ("猫 --size ５１２ｘ５１２", ImageRequest("猫", "512x512", 1)),
        ("猫 --size 768×512", ImageRequest("猫", "768x512", 1)),
        ("猫 －－ｓｉｚｅ＝６４０×３８４", ImageRequest("猫", "640x384", 1)),
        # The prompt keeps the characters the user typed.
        ("ＡＢＣ 猫，１只 --n 2", ImageRequest("ＡＢＣ 猫，１只", "512x512", 2)),
    ],
)
def test_full_width_options_are_options(args: str, expected: ImageRequest) -> None:
    assert parse_image_args(args, CONFIG) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("猫 －－ｓｔｙｌｅ anime", "Unknown option `－－ｓｔｙｌｅ`."),
        ("猫 --n ９", "`--n` takes a number from 1 to 4; got `9`."),
        ("猫 --size ５００ｘ５００", "Each side must be a multiple of 8"),
    ],
)
def test_full_width_options_are_checked_like_ascii_ones(args: str, message: str) -> None:
    answer = parse_image_args(args, CONFIG)
    assert isinstance(answer, str) and answer.startswith(message)


async def test_full_width_image_command_draws(
    model_app: App, fake_images: FakeImageGenerator
) -> None:
    await say(model_app, "／image 一只猫 －－ｎ ２")
    assert fake_images.calls == [("一只猫", "512x512", 2)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("--size 512x512", "Usage: `/image <prompt>"),
        ("a fox --size", "`--size` needs a value."),
        ("a fox --size big", "`--size` takes WIDTHxHEIGHT"),
        ("a fox --size 4096x4096", "Each side must be a multiple of 8 from 64 to 1024 pixels"),
        ("a fox --size 500x500", "Each side must be a multiple of 8"),
        ("a fox --n 9", "`--n` takes a number from 1 to 4; got `9`."),
        ("a fox --n two", "`--n` takes a number from 1 to 4"),
        ("a fox --n ²", "`--n` takes a number from 1 to 4; got `²`."),
        ("a fox --n 99999999999999999999", "`--n` takes a number from 1 to 4"),
        ("a fox --size 99999x1", "Each side must be a multiple of 8 from 64 to 1024 pixels"),
        ("a fox --style anime", "Unknown option `--style`."),
        ("x" * 101, "The prompt is too long (101 characters); keep it under 100."),
    ],
)
def test_bad_requests_get_a_clear_message(args: str, message: str) -> None:
    answer = parse_image_args(args, CONFIG)
    assert isinstance(answer, str) and answer.startswith(message)


async def test_image_replies_with_captioned_pictures(
    model_app: App, fake_images: FakeImageGenerator
) -> None:
    replies = await say(model_app, "/image a lighthouse at dusk --n 2 --size 640x384")
    assert fake_images.calls == [("a lighthouse at dusk", "640x384", 2)]
    assert [(r.image, r.text) for r in replies.replies] == [
        (FakeImageGenerator.PNG, "a lighthouse at dusk (1/2)"),
        (FakeImageGenerator.PNG, "a lighthouse at dusk (2/2)"),
    ]


async def test_withheld_images_are_mentioned(
    model_app: App, fake_images: FakeImageGenerator
) -> None:
    fake_images.keep = 1
    replies = await say(model_app, "/image a cat --n 3")
    assert [r.image is not None for r in replies.replies] == [True, False]
    assert replies.texts[-1] == "2 of 3 images were withheld by the safety filter."


async def test_bad_size_is_answered_without_calling_the_model(
    model_app: App, fake_images: FakeImageGenerator
) -> None:
    replies = await say(model_app, "/image a cat --size 10x10")
    assert replies.texts[0].startswith("Each side must be")
    assert fake_images.calls == []


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        ("refuse", "I can't draw that: the image service's content policy refused this prompt."),
        ("down", "The image service is unavailable, try again in a minute."),
    ],
)
async def test_provider_failures_become_plain_messages(
    model_app: App, fake_images: FakeImageGenerator, failure: str, message: str
) -> None:
    setattr(fake_images, failure, True)
    replies = await say(model_app, "/image something")
    assert len(replies.replies) == 1 and replies.replies[0].image is None
    assert replies.texts[0].startswith(message)


async def test_not_configured_is_one_line(app: App) -> None:
    assert (await say(app, "/image a cat")).texts == [
        "Image generation is not configured on this bot."
    ]
