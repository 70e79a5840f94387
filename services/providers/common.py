"""Pieces every text provider shares: chat-message translation and a rough token count."""

from __future__ import annotations

from collections.abc import Sequence

from services.types import Turn

# Used where the provider's tokenizer is not available locally (hosted models).
CHARS_PER_TOKEN = 3.5


def to_chat_messages(turns: Sequence[Turn]) -> list[dict[str, str]]:
    return [{"role": turn.role, "content": turn.text} for turn in turns]


def estimate_tokens(text: str) -> int:
    # Conservative for English, and CJK text counts about one token per character.
    cjk = sum(1 for ch in text if ord(ch) >= 0x2E80)
    return int((len(text) - cjk) / CHARS_PER_TOKEN) + cjk + 1
