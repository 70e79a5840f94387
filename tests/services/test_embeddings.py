"""The packaged all-MiniLM-L6-v2, loaded for real through the micro-batched embedder."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from services.providers.local_embeddings import LocalEmbedder


@pytest.fixture(scope="session")
def minilm() -> LocalEmbedder:
    torch.set_num_threads(1)  # shared test machines: see tests/modelhost/conftest.py
    return LocalEmbedder(device="cpu", max_wait_ms=20)


async def test_rows_are_unit_length_float32(minilm: LocalEmbedder) -> None:
    vectors = await minilm.embed(["hello world", "a second sentence", ""])
    assert vectors.shape == (3, 384) and minilm.dim == 384
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


async def test_similar_sentences_are_closer(minilm: LocalEmbedder) -> None:
    cat, kitten, tax = await minilm.embed(
        [
            "The cat sleeps on the sofa.",
            "A kitten is napping on the couch.",
            "File your tax return.",
        ]
    )
    assert float(cat @ kitten) > float(cat @ tax) + 0.2


async def test_concurrent_callers_share_a_batch_and_get_their_own_rows(
    minilm: LocalEmbedder,
) -> None:
    texts = [f"sentence number {i}" for i in range(12)]
    alone = await minilm.embed(texts)
    together = await asyncio.gather(*(minilm.embed([t]) for t in texts))
    assert minilm.batcher.batch_sizes[-1] == 12
    assert np.allclose(np.vstack(together), alone, atol=1e-5)


async def test_empty_input_is_an_empty_matrix(minilm: LocalEmbedder) -> None:
    assert (await minilm.embed([])).shape == (0, 384)
