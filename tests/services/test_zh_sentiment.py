"""Chinese sentiment offline: the character n-gram model, and the default routing to it."""

from __future__ import annotations

import pytest
from safetensors import safe_open

from services.providers.local_sentiment import LocalSentimentAnalyzer
from services.providers.zh_sentiment import (
    BUCKETS,
    FORMAT,
    WEIGHTS,
    ChineseSentiment,
    ngram_buckets,
    normalise,
)
from services.textforms import is_chinese

POSITIVE = [
    "非常好吃，服务也很棒，下次还来",
    "质量很好，物流很快，很满意",
    "iPhone 真好用，推荐购买",
]
NEGATIVE = [
    "太难吃了，送餐还慢，再也不点了",
    "质量太差，用了两天就坏了",
    "房间又脏又小，服务态度很差",
]


@pytest.mark.parametrize(
    ("text", "chinese"),
    [
        ("这家店的菜很好吃", True),
        ("iPhone 真好用", True),  # Han characters outnumber Latin words
        ("這間酒店環境不錯", True),  # traditional characters
        ("I love this lamp", False),
        ("差", True),  # one character is enough: "bad"
        ("the 好 movie was great fun", False),
        ("日本語のテキストはとても良いです", False),  # Japanese: kana beside the Han characters
        ("이 램프 정말 좋아요", False),  # Korean
    ],
)
def test_which_texts_read_as_chinese(text: str, chinese: bool) -> None:
    assert is_chinese(text) is chinese


def test_ngrams_fold_full_width_forms_and_case() -> None:
    assert normalise("  ＯＫ！ 很好  ") == "ok! 很好"
    assert list(ngram_buckets("ＯＫ好")) == list(ngram_buckets("ok好"))
    assert len(ngram_buckets("好吃")) == 3  # 好, 吃, 好吃
    assert all(0 <= b < BUCKETS for b in ngram_buckets("很好吃" * 50))
    assert len(ngram_buckets("")) == 0


def test_committed_weights_are_small_and_described() -> None:
    assert WEIGHTS.stat().st_size < 1_000_000
    with safe_open(str(WEIGHTS), framework="numpy") as handle:
        metadata = handle.metadata()
        assert handle.get_slice("weights").get_shape() == [BUCKETS]
    assert metadata["format"] == FORMAT and int(metadata["buckets"]) == BUCKETS


def test_the_character_model_labels_obvious_reviews() -> None:
    model = ChineseSentiment()
    results = model.predict(POSITIVE + NEGATIVE)
    assert [r.label for r in results] == ["positive"] * 3 + ["negative"] * 3
    assert all(0.5 <= r.score <= 1.0 for r in results)
    assert model.predict(["，。！"])[0].score >= 0.5  # no n-gram to go on: the bias decides


async def test_the_default_sends_chinese_to_the_character_model_and_keeps_order() -> None:
    analyzer = LocalSentimentAnalyzer(device="cpu")
    texts = [
        "i loved every minute of it .",
        NEGATIVE[0],
        "the worst movie i have seen this year .",
        POSITIVE[0],
    ]
    labels = [r.label for r in await analyzer.analyze(texts)]
    assert labels == ["positive", "negative", "negative", "positive"]
    assert [r.label for r in await analyzer.analyze(NEGATIVE)] == ["negative"] * 3


async def test_the_default_does_not_guess_at_what_it_cannot_read() -> None:
    analyzer = LocalSentimentAnalyzer(device="cpu")
    texts = [
        "この店は最悪です",
        "최악의 서비스",
        "😡😡😡",
        "差",
        "great fun",
        "10/10",
        "ＧＲＥＡＴ product",
    ]
    labels = [r.label for r in await analyzer.analyze(texts)]
    assert labels == ["unknown"] * 3 + ["negative"] + ["positive"] * 3


async def test_a_text_mixing_chinese_and_english_is_read_by_both_models() -> None:
    analyzer = LocalSentimentAnalyzer(device="cpu")
    # The Chinese half says nothing ("this app's UI design"); the English half decides.
    bad, good = await analyzer.analyze(
        ["这个 app 的 UI 设计 really bad", "这个 app 的 UI 设计 really great"]
    )
    assert (bad.label, good.label) == ("negative", "positive")


def test_a_lone_surrogate_is_hashed_not_raised() -> None:
    # JSON can carry "\ud800"; the model server's /classify takes what a client sends.
    assert len(ngram_buckets("好\ud800吃")) == 6
    assert ChineseSentiment().predict(["好\ud800吃"])[0].label in ("positive", "negative")
