"""Fit a chat request into the served model's context window, counting real tokens.

Bots trim their history before sending it, but a bot talking to this host only has an estimate
(about 3.5 characters a token): for Cyrillic, digits or code the real count is 1.5 to 3.5 times
that, and a long conversation would be refused on every turn. The host knows the tokenizer, so
it drops the oldest turns itself, as the bot meant to.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.budget import PER_TURN_OVERHEAD, fit_turns
from services.types import TextGenerator, Turn


class PromptTooLong(Exception):
    """Even the system prompt and the last message leave no room for the reply."""

    def __init__(self, prompt_tokens: int, *, max_tokens: int, context_window: int) -> None:
        super().__init__(
            f"{prompt_tokens} prompt tokens plus max_tokens {max_tokens} exceed the "
            f"context window of {context_window}"
        )


def fit_prompt(
    text: TextGenerator, turns: Sequence[Turn], *, max_tokens: int
) -> tuple[list[Turn], int]:
    """The turns to generate from, and their prompt tokens; the oldest dropped if too long.

    Tokenizes every message: call it off the event loop.
    """
    window = text.context_window
    known = {turn.text: text.count_tokens(turn.text) for turn in turns}

    def cost(some: Sequence[Turn]) -> int:
        return sum(known[turn.text] + PER_TURN_OVERHEAD for turn in some)

    prompt_tokens = cost(turns)
    if prompt_tokens + max_tokens <= window:
        return list(turns), prompt_tokens
    # Leading system turns are kept whole; later ones are history like any other turn.
    start = next((i for i, turn in enumerate(turns) if turn.role != "system"), len(turns))
    if start == len(turns):
        raise PromptTooLong(prompt_tokens, max_tokens=max_tokens, context_window=window)
    head = turns[:start]
    *history, current = turns[start:]
    needed = cost([*head, current])
    # fit_turns keeps one more turn's overhead free and would cut a last message too long for
    # the rest; the host refuses that instead, so fit_turns only counts the texts known here.
    if needed + PER_TURN_OVERHEAD + max_tokens > window:
        raise PromptTooLong(needed, max_tokens=max_tokens, context_window=window)
    kept = fit_turns(
        None,
        history,
        current,
        context_window=window - cost(head),
        reply_tokens=max_tokens,
        count=known.__getitem__,
    )
    fitted = [*head, *kept]
    return fitted, cost(fitted)
