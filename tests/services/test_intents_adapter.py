"""The intents adapter: its file format, loading it onto the packaged MiniLM, and what it is for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from services.kb.knowledge import KnowledgeBase, calibrated_threshold
from services.kb.retrieval import FAQ_THRESHOLD, PASSAGE_THRESHOLD
from services.providers.local_embeddings import (
    INTENTS_MODEL,
    INTENTS_PASSAGE_THRESHOLD,
    INTENTS_WEIGHTS,
    EncoderAdapterConfig,
    LocalEmbedder,
    apply_encoder_adapter,
    load_sentence_model,
    read_adapter_config,
)
from services.providers.local_sentiment import add_lora, save_adapter
from tests.fakes.kb_embedder import HashingEmbedder


@pytest.fixture(scope="module")
def intents() -> LocalEmbedder:
    torch.set_num_threads(1)  # shared test machines: see tests/modelhost/conftest.py
    return LocalEmbedder(model=INTENTS_MODEL, device="cpu", max_wait_ms=1)


def test_config_round_trips_through_the_metadata() -> None:
    config = EncoderAdapterConfig(rank=4, faq_threshold=0.25)
    assert EncoderAdapterConfig.from_metadata(config.to_metadata()) == config
    with pytest.raises(ValueError, match="switchboard-lora-encoder"):
        EncoderAdapterConfig.from_metadata({"format": "switchboard-lora-classifier/1"})


def test_an_untrained_adapter_leaves_the_embeddings_unchanged(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    plain = load_sentence_model("all-minilm-l6-v2", models_dir=tmp_path, device="cpu")
    trainee = load_sentence_model("all-minilm-l6-v2", models_dir=tmp_path, device="cpu")
    config = EncoderAdapterConfig(rank=2, faq_threshold=0.5)
    add_lora(trainee[0].auto_model, config)  # LoRA's B starts at zero
    path = tmp_path / "adapter.safetensors"
    save_adapter(trainee[0].auto_model, path, config=config)
    adapted = load_sentence_model(INTENTS_MODEL, models_dir=tmp_path, device="cpu", adapter=path)
    texts = ["Where is my card?", "I want a refund"]
    alone = plain.encode(texts, normalize_embeddings=True)
    paired = np.hstack([alone, alone]) / np.sqrt(2)
    assert np.allclose(adapted.encode(texts), paired, atol=1e-3)
    assert read_adapter_config(path).faq_threshold == 0.5


def test_an_adapter_for_another_shape_is_refused(tmp_path: Path) -> None:
    trainee = load_sentence_model("all-minilm-l6-v2", models_dir=tmp_path, device="cpu")
    add_lora(trainee[0].auto_model, EncoderAdapterConfig(rank=2))
    path = tmp_path / "adapter.safetensors"
    save_adapter(trainee[0].auto_model, path, config=EncoderAdapterConfig(rank=4))
    with pytest.raises(RuntimeError, match="size mismatch"):
        apply_encoder_adapter(
            load_sentence_model("all-minilm-l6-v2", models_dir=tmp_path, device="cpu")[
                0
            ].auto_model,
            path,
        )


async def test_the_shipped_adapter_keeps_phrasings_of_one_question_together(
    intents: LocalEmbedder,
) -> None:
    lost, stolen, arrival, rate = await intents.embed(
        [
            "I lost my card, what do I do?",
            "My card was stolen",
            "When will my new card arrive?",
            "What exchange rate do you use?",
        ]
    )
    assert lost.shape == (768,) and intents.dim == 768
    assert np.allclose(np.linalg.norm([lost, rate], axis=1), 1.0, atol=1e-5)
    assert float(lost @ stolen) > float(lost @ rate) + 0.2
    assert float(lost @ stolen) > float(lost @ arrival)


def test_the_knowledge_base_takes_the_adapters_faq_threshold(intents: LocalEmbedder) -> None:
    shipped = read_adapter_config(INTENTS_WEIGHTS).faq_threshold
    assert isinstance(shipped, float) and intents.faq_threshold == shipped
    assert KnowledgeBase(intents).thresholds["faq"] == shipped
    assert calibrated_threshold(HashingEmbedder(), "faq") == FAQ_THRESHOLD
    assert KnowledgeBase(intents, faq_threshold=0.9).thresholds["faq"] == 0.9
    # Passages too: the adapter's own, the plain model's elsewhere.
    assert KnowledgeBase(intents).thresholds["passage"] == INTENTS_PASSAGE_THRESHOLD
    assert KnowledgeBase(HashingEmbedder()).thresholds["passage"] == PASSAGE_THRESHOLD
