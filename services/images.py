"""What every image provider and /image share: size parsing and the user-facing messages."""

from __future__ import annotations

import io
import re
from typing import Any

from services.types import ProviderError

UNAVAILABLE = "The image service is unavailable, try again in a minute."
REFUSED = (
    "I can't draw that: the image service's content policy refused this prompt. "
    "Try describing something else."
)
FLAGGED = "I can't show that: the safety filter flagged every image. Try another prompt."
BAD_SIZE = "That size is not supported by this image model; try 512x512 or 1024x1024."

_SIZE = re.compile(r"^([1-9][0-9]{0,5})[xX×]([1-9][0-9]{0,5})$")


def parse_size(size: str) -> tuple[int, int] | None:
    """'512x768' -> (512, 768); None for anything that is not WIDTHxHEIGHT."""
    match = _SIZE.match(size.strip())
    return (int(match[1]), int(match[2])) if match else None


def to_png(image: Any) -> bytes:
    """PNG bytes of a PIL image."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class _Refusal(ProviderError):
    """A request the provider refused: it says nothing about the provider's health."""

    def __init__(self, user_message: str, *, detail: str = "") -> None:
        super().__init__(user_message, detail=detail, transient=False)


class ImageRefused(_Refusal):
    """The provider's content policy or safety checker refused the prompt or its images."""


class ImageSizeError(_Refusal):
    """The model cannot draw the requested size."""
