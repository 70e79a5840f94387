"""`serve-models` end to end: the real openai client and httpx against the real server, with
the packaged SmolLM2 and MiniLM, the offline sentiment classifier and a tiny diffusion model."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
from collections.abc import AsyncIterator, Sequence

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from services.modelhost.batched import BatchedSentimentAnalyzer
from services.modelhost.schemas import MAX_TEXT_CHARS, MAX_TOTAL_CHARS
from services.modelhost.server import MAX_BODY_BYTES, ModelHost, build_model_app
from services.providers.local_embeddings import LocalEmbedder
from services.types import ProviderError, Sentiment
from tests.modelhost.conftest import serving


def client(url: str, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)


async def test_chat_streams_over_sse(server_url: str) -> None:
    stream = await client(server_url).chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=8,
        temperature=0,
        stream=True,
    )
    pieces, finish = [], None
    async for chunk in stream:
        pieces.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
    assert len([p for p in pieces if p]) > 1
    assert "Paris" in "".join(pieces) and finish in ("stop", "length")


async def test_chat_without_streaming_reports_usage(server_url: str) -> None:
    answer = await client(server_url).chat.completions.create(
        model="any",
        messages=[
            {"role": "developer", "content": "Answer in one word."},
            {"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]},
        ],
        max_tokens=4,
        temperature=0,
    )
    assert answer.choices[0].message.content
    assert answer.usage is not None and 0 < answer.usage.completion_tokens <= 5


async def test_embeddings_match_the_in_process_model(
    server_url: str, minilm: LocalEmbedder
) -> None:
    texts = ["The cat sleeps.", "A kitten naps.", "Taxes are due."]
    # The SDK asks for base64 unless told otherwise, and decodes it itself.
    for options in ({}, {"encoding_format": "float"}):
        response = await client(server_url).embeddings.create(
            model="all-minilm-l6-v2",
            input=texts,
            **options,  # type: ignore[arg-type]
        )
        remote = np.array([item.embedding for item in response.data], dtype=np.float32)
        assert remote.shape == (3, 384)
        assert np.allclose(remote, await minilm.embed(texts), atol=1e-5)


async def test_images_come_back_as_b64_png(server_url: str) -> None:
    response = await client(server_url).images.generate(
        prompt="a cat",
        n=2,
        size="64x64",
        response_format="b64_json",  # type: ignore[arg-type]
    )
    assert response.data is not None and len(response.data) == 2
    for item in response.data:
        assert item.b64_json is not None
        with Image.open(io.BytesIO(base64.b64decode(item.b64_json))) as image:
            assert image.format == "PNG" and image.size == (64, 64)


async def test_classify_labels_and_scores(server_url: str) -> None:
    texts = ["I love this wonderful, moving film.", "A dull, painful waste of two hours."]
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{server_url}/classify", json={"input": texts})
    assert response.status_code == 200
    data = response.json()["data"]
    assert [row["label"] for row in data] == ["positive", "negative"]
    assert all(0.5 <= row["score"] <= 1 for row in data)


async def test_models_and_openapi(server_url: str) -> None:
    models = await client(server_url).models.list()
    assert {m.id for m in models.data} >= {"smollm2-135m-instruct", "all-minilm-l6-v2"}
    async with httpx.AsyncClient() as http:
        spec = (await http.get(f"{server_url}/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    assert {"/v1/chat/completions", "/v1/embeddings", "/v1/images/generations", "/classify"} <= set(
        spec["paths"]
    )
    assert "ChatRequest" in spec["components"]["schemas"]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/chat/completions", b"not json", 400),
        ("/v1/chat/completions", b'{"messages": []}', 400),
        ("/v1/chat/completions", b'{"messages": [{"role": "tool", "content": "x"}]}', 400),
        ("/v1/embeddings", b'{"input": []}', 400),
        ("/v1/images/generations", b'{"prompt": "a cat", "size": "9000x9000"}', 400),
        ("/v1/images/generations", b'{"prompt": "a cat", "n": "2"}', 400),
        ("/classify", b'{"input": 5}', 400),
    ],
)
async def test_bad_requests_get_openai_style_400s(
    server_url: str, path: str, body: bytes, status: int
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{server_url}{path}", content=body)
    assert response.status_code == status
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_a_missing_model_is_404_and_the_api_key_is_checked() -> None:
    async with serving(build_model_app(ModelHost(api_key="s3cret"))) as url:
        with pytest.raises(openai.AuthenticationError):
            await client(url, "wrong").models.list()
        with pytest.raises(openai.NotFoundError):
            await client(url, "s3cret").embeddings.create(model="x", input=["hi"])


BATCH_ROUTES = ["/v1/chat/completions", "/v1/embeddings", "/classify"]


@pytest.mark.parametrize("path", BATCH_ROUTES)
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_oversized_body_is_413_while_others_are_served(path: str, declared: bool) -> None:
    health: list[int] = []
    answered = asyncio.Event()
    piece = b" " * (1024 * 1024)
    pieces = MAX_BODY_BYTES // len(piece) + 1

    async def upload() -> AsyncIterator[bytes]:
        yield piece
        await answered.wait()  # the rest only once /healthz has answered meanwhile
        for _ in range(pieces - 1):
            yield piece

    # No models: the body is refused before anything looks for one.
    async with serving(build_model_app(ModelHost())) as url, httpx.AsyncClient() as http:
        headers = {"content-length": str(pieces * len(piece))} if declared else {}
        post = asyncio.ensure_future(http.post(f"{url}{path}", content=upload(), headers=headers))
        health.append((await http.get(f"{url}/healthz")).status_code)
        answered.set()
        response = await post
    assert health == [200]
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def _texts(n: int) -> list[str]:
    return ["w" * MAX_TEXT_CHARS] * n


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": text} for text in _texts(6)]},
        ),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}] * 1001}),
        ("/v1/embeddings", {"input": _texts(6)}),
        ("/classify", {"input": _texts(6)}),
        ("/classify", {"input": ["w" * (MAX_TEXT_CHARS + 1)]}),
    ],
)
async def test_requests_over_the_schema_limits_are_400s(path: str, body: dict[str, object]) -> None:
    assert len(json.dumps(body)) < MAX_BODY_BYTES  # refused for what they hold, not their size
    async with serving(build_model_app(ModelHost())) as url, httpx.AsyncClient() as http:
        response = await http.post(f"{url}{path}", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_the_character_cap_fits_in_the_body_cap() -> None:
    # Every character JSON-escaped as \uXXXX still fits: a valid request is never a 413.
    assert MAX_TOTAL_CHARS * len("\\u0439") < MAX_BODY_BYTES


class Gated:
    name = "gated"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()

    def predict(self, texts: Sequence[str]) -> list[Sentiment]:
        self.started.set()
        self.gate.wait(timeout=10)
        return [Sentiment("positive", 1.0) for _ in texts]


async def test_a_full_queue_is_a_503_busy() -> None:
    model = Gated()
    analyzer = BatchedSentimentAnalyzer(model, max_batch=1, max_wait_ms=0, max_queue=1)
    app = build_model_app(ModelHost(sentiment=analyzer))
    async with serving(app) as url, httpx.AsyncClient() as http:

        async def classify(text: str) -> httpx.Response:
            return await http.post(f"{url}/classify", json={"input": text})

        # One request running (held by the gate), then one waiting: the queue of one is full.
        running = asyncio.ensure_future(classify("a"))
        await asyncio.wait_for(asyncio.to_thread(model.started.wait), 10)
        waiting = asyncio.ensure_future(classify("b"))
        for _ in range(1000):
            if analyzer.batcher.waiting == 1:
                break
            await asyncio.sleep(0.01)
        busy = await classify("c")
        model.gate.set()
        assert [r.status_code for r in await asyncio.gather(running, waiting)] == [200, 200]
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert "busy, try again" in busy.json()["error"]["message"]


class LateEmbedder:
    """Fails its start-up load, then works, as a model whose files arrive late does."""

    name = "local:late-minilm"
    dim = 2
    loads = False

    async def warm(self) -> None:
        if not self.loads:
            raise ProviderError("unavailable", detail="local embeddings: OSError('no hub')")

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.ones((len(texts), self.dim), dtype=np.float32)


async def test_a_model_that_failed_to_load_is_not_listed_until_it_serves() -> None:
    from bot.model_services import warm_host

    host = ModelHost(embeddings=LateEmbedder())  # type: ignore[arg-type]
    await warm_host(host)
    async with serving(build_model_app(host)) as url, httpx.AsyncClient() as http:
        health = await http.get(f"{url}/healthz")
        assert health.status_code == 200  # liveness: the rest of the server still serves
        # Only the kind: the reason, which may name paths, is in the log, and this needs no key.
        assert health.json() == {"status": "degraded", "models": {}, "failed": ["embeddings"]}
        assert (await client(url).models.list()).data == []
        # A success while the model still does not load (as sentiment answers Chinese without
        # MiniLM) does not make it ready.
        response = await client(url).embeddings.create(model="late-minilm", input=["hi"])
        assert len(response.data) == 1
        assert (await http.get(f"{url}/healthz")).json()["failed"] == ["embeddings"]
        host.embeddings.loads = True  # type: ignore[union-attr]
        await client(url).embeddings.create(model="late-minilm", input=["hi"])
        listed = await client(url).models.list()
        assert [m.id for m in listed.data] == ["late-minilm"]
        health = await http.get(f"{url}/healthz")
        assert health.json()["status"] == "ok" and health.json()["failed"] == []
