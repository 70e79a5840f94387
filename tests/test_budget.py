"""Context budget: however long the conversation, the request fits the window."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.budget import PER_TURN_OVERHEAD, fit_turns
from services.types import Turn


def words(text: str) -> int:
    return len(text.split()) + 1


def cost(turns: list[Turn]) -> int:
    return sum(words(t.text) + PER_TURN_OVERHEAD for t in turns)


def test_keeps_newest_turns_and_drops_oldest() -> None:
    history = [Turn("user" if i % 2 == 0 else "assistant", f"turn {i} " * 10) for i in range(40)]
    turns = fit_turns(
        Turn("system", "be brief"),
        history,
        Turn("user", "now?"),
        context_window=200,
        reply_tokens=64,
        count=words,
    )
    assert turns[0].text == "be brief" and turns[-1].text == "now?"
    assert turns[1].role == "user"
    assert turns[-2].text == history[-1].text
    assert cost(turns) <= 200 - 64


def test_a_single_huge_message_keeps_its_end() -> None:
    text = " ".join(f"w{i}" for i in range(5000)) + " the question?"
    turns = fit_turns(
        None, [], Turn("user", text), context_window=300, reply_tokens=100, count=words
    )
    assert turns[-1].text.endswith("the question?")
    assert cost(turns) <= 300 - 100 + PER_TURN_OVERHEAD


def test_reply_budget_larger_than_window_is_refused() -> None:
    with pytest.raises(ValueError):
        fit_turns(None, [], Turn("user", "x"), context_window=64, reply_tokens=64, count=words)


@given(
    st.lists(st.text(min_size=0, max_size=400), max_size=30),
    st.text(min_size=1, max_size=3000),
    st.integers(min_value=100, max_value=2000),
)
def test_never_exceeds_the_window(history_texts: list[str], current: str, window: int) -> None:
    history = [Turn("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(history_texts)]
    turns = fit_turns(
        Turn("system", "sys"),
        history,
        Turn("user", current),
        context_window=window,
        reply_tokens=window // 4,
        count=words,
    )
    assert cost(turns) + window // 4 <= window + PER_TURN_OVERHEAD
    assert turns[-1].role == "user"
