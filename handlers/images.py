"""/image <prompt> [--size WxH] [--n N]: pictures from the configured image provider."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from handlers.context import Context
from handlers.router import Router
from handlers.types import Reply
from services.container import ImageConfig
from services.images import parse_size
from services.textforms import fold_width
from services.types import ProviderError

log = logging.getLogger(__name__)

USAGE = "Usage: `/image <prompt> [--size WxH] [--n N]`, e.g. `/image a red fox in snow --n 2`"
NOT_CONFIGURED = "Image generation is not configured on this bot."
CAPTION_CHARS = 200
MIN_SIDE = 64


@dataclass(frozen=True, slots=True)
class ImageRequest:
    prompt: str
    size: str
    n: int


def _options(words: list[str]) -> tuple[list[str], dict[str, str]] | str:
    """Split ``--size X`` / ``--size=X`` / ``--n N`` / ``-n N`` from the prompt words."""
    prompt: list[str] = []
    options: dict[str, str] = {}
    names = {"--size": "size", "--n": "n", "-n": "n"}
    index = 0
    while index < len(words):
        word = words[index]
        # A Chinese keyboard types "－－ｎ ２" for "--n 2": options are read folded, while the
        # prompt words keep the characters the user typed.
        name, equals, value = fold_width(word).partition("=")
        if name in names:
            if not equals:
                if index + 1 == len(words):
                    return f"`{name}` needs a value. {USAGE}"
                index += 1
                value = fold_width(words[index])
            options[names[name]] = value
        elif name.startswith("--"):
            return f"Unknown option `{word}`. {USAGE}"
        else:
            prompt.append(word)
        index += 1
    return prompt, options


def parse_image_args(args: str, config: ImageConfig) -> ImageRequest | str:
    """The request, or a one-line message saying what is wrong with it."""
    parsed = _options(args.split())
    if isinstance(parsed, str):
        return parsed
    words, options = parsed
    prompt = " ".join(words)
    if not prompt:
        return USAGE
    if len(prompt) > config.max_prompt_chars:
        return (
            f"The prompt is too long ({len(prompt)} characters); "
            f"keep it under {config.max_prompt_chars}."
        )
    size = options.get("size", config.default_size)
    sides = parse_size(size)
    if sides is None:
        return f"`--size` takes WIDTHxHEIGHT, e.g. `--size 512x512`; got `{size}`."
    if any(side < MIN_SIDE or side > config.max_side or side % 8 for side in sides):
        return (
            f"Each side must be a multiple of 8 from {MIN_SIDE} to {config.max_side} pixels; "
            f"got `{size}`."
        )
    count = options.get("n", "1")
    # str.isdigit() also takes "²" and other digits int() refuses.
    if not re.fullmatch(r"[0-9]{1,3}", count) or not 1 <= int(count) <= config.max_n:
        return f"`--n` takes a number from 1 to {config.max_n}; got `{count}`."
    return ImageRequest(prompt, f"{sides[0]}x{sides[1]}", int(count))


def _caption(prompt: str, index: int, total: int) -> str:
    text = prompt if len(prompt) <= CAPTION_CHARS else prompt[: CAPTION_CHARS - 1] + "…"
    return f"{text} ({index}/{total})" if total > 1 else text


def register(router: Router) -> None:
    @router.command(
        "image",
        args="<prompt> [--size WxH] [--n N]",
        args_required=True,
        summary="draw a picture from a description",
    )
    async def image(ctx: Context, args: str) -> None:
        generator = ctx.services.images
        if generator is None:
            await ctx.reply_text(NOT_CONFIGURED)
            return
        request = parse_image_args(args, ctx.services.image_config)
        if isinstance(request, str):
            await ctx.reply_text(request)
            return
        try:
            async with ctx.responder.typing():
                images = await generator.generate(request.prompt, size=request.size, n=request.n)
        except ProviderError as exc:
            log.warning("image failed for event %s: %s", ctx.incoming.event_id, exc.detail)
            await ctx.reply_text(exc.user_message)
            return
        for index, picture in enumerate(images, start=1):
            await ctx.reply(Reply(image=picture, text=_caption(request.prompt, index, len(images))))
        if len(images) < request.n:
            withheld = request.n - len(images)
            await ctx.reply_text(
                f"{withheld} of {request.n} images were withheld by the safety filter."
            )
