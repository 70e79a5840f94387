"""Which questions lean on the conversation, by their words, in any script."""

from __future__ import annotations

import pytest

from services.qa.standalone import is_follow_up, is_short


@pytest.mark.parametrize(
    ("question", "follow_up", "short"),
    [
        ("and for Spain?", True, True),
        ("How much does it cost?", True, True),
        ("how long do I have?", False, True),
        ("Which payment methods do you accept for orders to Norway?", False, False),
        ("多少钱？", True, True),  # three characters: too short to stand
        ("退货以后需要多长时间才能收到退款呢？", False, False),  # a whole question
        ("Сколько стоит доставка в Москву для заказа?", False, False),
    ],
)
def test_follow_ups_and_short_questions(question: str, follow_up: bool, short: bool) -> None:
    assert is_follow_up(question) is follow_up
    assert is_short(question) is short
