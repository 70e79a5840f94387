"""Real models for the model-host tests, loaded once per session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import torch
import uvicorn
from starlette.applications import Starlette

from services.modelhost.batched import BatchedSentimentAnalyzer
from services.modelhost.server import ModelHost, build_model_app
from services.providers.local import LocalTextGenerator
from services.providers.local_embeddings import LocalEmbedder
from services.providers.local_images import LocalImageGenerator
from services.providers.local_sentiment import LocalSentimentAnalyzer
from tests.fakes.tiny_diffusion import save_tiny_pipeline

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> None:
    # Test machines are shared: with other processes on the cores, OpenMP's spinning
    # intra-op threads make a 135M model many times slower than one thread does.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def smollm2() -> LocalTextGenerator:
    # `make test` fetches and converts the model into var/models first; this reuses it.
    return LocalTextGenerator(
        model="smollm2-135m-instruct",
        models_dir=ROOT / "var" / "models",
        device="cpu",
        max_batch=8,
        max_wait_ms=30,
    )


@pytest.fixture(scope="session")
def minilm() -> LocalEmbedder:
    return LocalEmbedder(device="cpu", max_wait_ms=20)


@pytest.fixture(scope="session")
def sentiment() -> BatchedSentimentAnalyzer:
    """The offline default classifier (packaged MiniLM plus the committed adapter)."""
    return BatchedSentimentAnalyzer(LocalSentimentAnalyzer(device="cpu"), max_wait_ms=20)


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory: pytest.TempPathFactory) -> LocalImageGenerator:
    folder = save_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd"))
    return LocalImageGenerator(model=str(folder), device="cpu", steps=1, max_wait_ms=20)


@pytest.fixture
def host(
    smollm2: LocalTextGenerator,
    minilm: LocalEmbedder,
    sentiment: BatchedSentimentAnalyzer,
    tiny_images: LocalImageGenerator,
) -> ModelHost:
    return ModelHost(
        text=smollm2,
        embeddings=minilm,
        sentiment=sentiment,
        images=tiny_images,
        image_size="64x64",
    )


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """``app`` on a free port of 127.0.0.1, under uvicorn as `serve-models` runs it."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def server_url(host: ModelHost) -> AsyncIterator[str]:
    async with serving(build_model_app(host)) as url:
        yield url
