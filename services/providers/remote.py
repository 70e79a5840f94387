"""Our model server's vLLM-style ``POST /classify``, for sentiment on a shared GPU host.

(Chat, embeddings and images on that host use the OpenAI-compatible providers with
``base_url`` set to it.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx

from services.modelhost.batcher import MicroBatcher
from services.providers.http_errors import StatusErrors
from services.types import ProviderError, Sentiment

UNAVAILABLE = "The sentiment service is unavailable, try again in a minute."


class RemoteSentimentAnalyzer:
    """A :class:`~services.types.SentimentAnalyzer` calling ``{base_url}/classify``."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str = "sentiment",
        api_key: str | None = None,
        timeout: float = 30.0,
        max_batch: int = 256,
        max_wait_ms: float = 2.0,
    ) -> None:
        self.name = f"remote:{model}"
        self.model = model
        self._url = base_url.rstrip("/") + "/classify"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout
        self._errors = StatusErrors(
            provider=self.name,
            model=model,
            unavailable=UNAVAILABLE,
            service="sentiment",
            key_setting="MODEL_HOST_API_KEY",
        )
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Concurrent callers share one request: fewer round trips, and the server gets the
        # texts together, as one batch, instead of interleaved with other traffic.
        self.batcher: MicroBatcher[str, Sentiment] = MicroBatcher(
            self._classify,
            name=f"classify-client:{model}",
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_queue=100_000,  # the server's own queue is the one that says "busy"
        )

    def _http(self) -> httpx.AsyncClient:
        # Pooled connections belong to the event loop that opened them.
        loop = asyncio.get_running_loop()
        if self._client is None or self._client.is_closed or self._loop is not loop:
            self._client = httpx.AsyncClient(timeout=self._timeout, headers=self._headers)
            self._loop = loop
        return self._client

    async def analyze(self, texts: Sequence[str]) -> list[Sentiment]:
        return await self.batcher.run(list(texts))

    async def _classify(self, texts: list[str]) -> list[Sentiment]:
        body = {"model": self.model, "input": list(texts)}
        try:
            try:
                response = await self._http().post(self._url, json=body)
            except (httpx.ReadError, httpx.RemoteProtocolError):
                # A pooled keep-alive connection the server had just closed: classifying is
                # idempotent, so once more on a fresh connection.
                response = await self._http().post(self._url, json=body)
        except httpx.HTTPError as exc:
            raise ProviderError(UNAVAILABLE, detail=f"classify: {exc!r}") from exc
        if response.status_code != 200:
            raise self._errors.to_provider_error(response.status_code, response.text)
        return to_sentiments(response.json(), len(texts))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def to_sentiments(body: Any, count: int) -> list[Sentiment]:
    try:
        rows = sorted(body["data"], key=lambda row: row["index"])
        result = [Sentiment(label=str(r["label"]), score=float(r["score"])) for r in rows]
    except (KeyError, TypeError, ValueError) as exc:
        raise ProviderError(UNAVAILABLE, detail=f"classify: bad answer {exc!r}") from exc
    if len(result) != count:
        raise ProviderError(UNAVAILABLE, detail=f"classify: {len(result)} labels for {count}")
    return result
