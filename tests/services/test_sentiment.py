"""Local sentiment: the packaged MiniLM with our adapter, and a tiny hub-style classifier."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from services.providers.local_sentiment import (
    UNAVAILABLE,
    WEIGHTS,
    AdapterConfig,
    LocalSentimentAnalyzer,
    to_sentiment_label,
)
from services.types import ProviderError

WORDS = ["good", "bad", "film", "a", "very", "boring", "great"]


@pytest.fixture(scope="module")
def offline_default() -> LocalSentimentAnalyzer:
    return LocalSentimentAnalyzer(device="cpu")


def test_committed_adapter_is_small_and_described() -> None:
    assert WEIGHTS.stat().st_size < 5_000_000
    with safe_open(str(WEIGHTS), framework="pt") as handle:
        config = AdapterConfig.from_metadata(handle.metadata())
    assert config.labels == ("negative", "positive")


async def test_offline_default_labels_obvious_sentences(
    offline_default: LocalSentimentAnalyzer,
) -> None:
    texts = [
        "a wonderful , moving film with brilliant performances .",
        "a dull , lifeless mess and a complete waste of time .",
        "i loved every minute of it .",
        "the worst movie i have seen this year .",
    ]
    results = await offline_default.analyze(texts)
    assert [r.label for r in results] == ["positive", "negative", "positive", "negative"]
    assert all(0.5 <= r.score <= 1.0 for r in results)


def test_predict_keeps_input_order_across_chunks(offline_default: LocalSentimentAnalyzer) -> None:
    texts = ["great fun .", "awful .", "an utterly tedious , joyless and overlong drama ."] * 30
    batched = offline_default.predict(texts)
    single = [offline_default.predict([t])[0] for t in texts[:3]]
    assert [r.label for r in batched[:3]] == [r.label for r in single]
    assert [r.label for r in batched] == [r.label for r in batched[:3]] * 30
    assert offline_default.predict([]) == []


def _save_tiny_classifier(folder: Path, id2label: dict[int, str]) -> None:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(folder)
    config = BertConfig(
        vocab_size=5 + len(WORDS),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )
    BertForSequenceClassification(config).save_pretrained(folder)


@pytest.mark.parametrize(
    ("id2label", "expected"),
    [
        ({0: "NEGATIVE", 1: "POSITIVE"}, {"negative", "positive"}),
        ({0: "LABEL_0", 1: "LABEL_1"}, {"negative", "positive"}),
        ({0: "negative", 1: "neutral", 2: "positive"}, {"negative", "neutral", "positive"}),
    ],
)
async def test_hub_style_classifier_loads_from_folder(
    tmp_path: Path, id2label: dict[int, str], expected: set[str]
) -> None:
    _save_tiny_classifier(tmp_path, id2label)
    analyzer = LocalSentimentAnalyzer(model=str(tmp_path), device="cpu")
    results = await analyzer.analyze(["a very good film", "bad", "something unseen"])
    assert len(results) == 3
    assert {r.label for r in results} <= expected
    assert all(1 / len(id2label) <= r.score <= 1.0 for r in results)


@pytest.mark.parametrize(
    ("raw", "index", "count", "label"),
    [
        ("POSITIVE", 1, 2, "positive"),
        ("Negative", 0, 2, "negative"),
        ("LABEL_1", 1, 2, "positive"),
        ("LABEL_1", 1, 3, "neutral"),
    ],
)
def test_class_names_map_to_our_labels(raw: str, index: int, count: int, label: str) -> None:
    assert to_sentiment_label(raw, index=index, num_labels=count) == label


def test_unknown_class_names_are_refused() -> None:
    with pytest.raises(ValueError, match="5 stars"):
        to_sentiment_label("5 stars", index=4, num_labels=5)


async def test_unusable_adapter_gives_a_message_the_user_can_read(tmp_path: Path) -> None:
    adapter = tmp_path / "other.safetensors"
    save_file({"head.weight": torch.zeros(2, 4)}, str(adapter), metadata={"format": "other"})
    analyzer = LocalSentimentAnalyzer(adapter=adapter, device="cpu")
    with pytest.raises(ProviderError) as caught:
        await analyzer.analyze(["fine"])
    assert caught.value.user_message == UNAVAILABLE
