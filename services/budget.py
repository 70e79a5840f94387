"""Fit a conversation into the model's context window, newest turns first.

Whatever the length of the conversation, the prompt plus the reply budget stays inside the
window: the oldest turns are dropped first, and a single message too long on its own keeps its
end (the part a user usually asks about).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from services.types import Turn

# Chat templates add a few tokens of markup around every turn.
PER_TURN_OVERHEAD = 8
TRUNCATION_MARK = "[…] "


def _truncate_to(text: str, tokens: int, count: Callable[[str], int]) -> str:
    """Keep the tail of ``text`` within ``tokens``, by bisection over characters."""
    if count(text) <= tokens:
        return text
    low, high = 0, len(text)
    while low < high:
        mid = (low + high) // 2
        if count(TRUNCATION_MARK + text[mid:]) <= tokens:
            high = mid
        else:
            low = mid + 1
    return TRUNCATION_MARK + text[low:]


def fit_turns(
    system: Turn | None,
    history: Sequence[Turn],
    current: Turn,
    *,
    context_window: int,
    reply_tokens: int,
    count: Callable[[str], int],
) -> list[Turn]:
    """The turns to send: system prompt, as much recent history as fits, the current turn."""
    budget = context_window - reply_tokens - PER_TURN_OVERHEAD
    if budget <= 0:
        raise ValueError("the reply budget does not fit in the context window")
    head: list[Turn] = []
    if system is not None:
        cost = count(system.text) + PER_TURN_OVERHEAD
        if cost <= budget // 2:
            head = [system]
            budget -= cost
    current_cost = count(current.text) + PER_TURN_OVERHEAD
    if current_cost > budget:
        text = _truncate_to(current.text, max(budget - PER_TURN_OVERHEAD, 1), count)
        return [*head, Turn(current.role, text)]
    budget -= current_cost
    kept: list[Turn] = []
    for turn in reversed(history):
        cost = count(turn.text) + PER_TURN_OVERHEAD
        if cost > budget:
            break
        kept.append(turn)
        budget -= cost
    kept.reverse()
    # A context that opens with an assistant turn confuses some chat templates.
    while kept and kept[0].role == "assistant":
        kept.pop(0)
    return [*head, *kept, current]
