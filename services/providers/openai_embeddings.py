"""Embeddings over the OpenAI embeddings API: OpenAI itself, or our model server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import openai
from numpy.typing import NDArray

from services.modelhost.batcher import MicroBatcher
from services.providers.http_errors import StatusErrors, openai_key_setting
from services.types import ProviderError

UNAVAILABLE = "The embedding service is unavailable, try again in a minute."
# The API takes at most this many inputs per request.
MAX_INPUTS = 2048


class OpenAIEmbedder:
    """An :class:`~services.types.Embedder`; rows are re-normalised, whatever the server did."""

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        dim: int | None = None,
        max_batch: int = 256,
        max_wait_ms: float = 2.0,
    ) -> None:
        self.name = f"openai:{model}"
        self.model = model
        self._dim = dim
        options: dict[str, Any] = {
            "api_key": api_key,
            "base_url": base_url,
            "timeout": timeout,
            "max_retries": max_retries,
        }
        self._client = openai.AsyncOpenAI(**options)
        self._options = options
        self._errors = StatusErrors(
            provider=self.name,
            model=model,
            unavailable=UNAVAILABLE,
            service="embedding",
            key_setting=openai_key_setting(base_url),
        )
        # Concurrent callers share one request: fewer round trips and a fuller server batch.
        self.batcher: MicroBatcher[str, list[float]] = MicroBatcher(
            self._rows,
            name=f"embeddings-client:{model}",
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_queue=100_000,  # the server's own queue is the one that says "busy"
        )

    @property
    def dim(self) -> int:
        if self._dim is None:
            # Learnt from the first answer; before any, one blocking probe (once per process).
            with openai.OpenAI(**self._options) as client:
                probe = client.embeddings.create(model=self.model, input=["dimension probe"])
            self._dim = len(probe.data[0].embedding)
        return self._dim

    async def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        rows = await self.batcher.run(list(texts))
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        matrix = np.asarray(rows, dtype=np.float32)
        self._dim = matrix.shape[1]
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        normalised: NDArray[np.float32] = (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
        return normalised

    async def _rows(self, texts: list[str]) -> list[list[float]]:
        rows: list[list[float]] = []
        for start in range(0, len(texts), MAX_INPUTS):
            rows += await self._request(texts[start : start + MAX_INPUTS])
        return rows

    async def _request(self, texts: list[str]) -> list[list[float]]:
        try:
            response = await self._client.embeddings.create(model=self.model, input=texts)
        except openai.APIStatusError as exc:
            raise self._errors.to_provider_error(exc.status_code, exc.message) from exc
        except openai.OpenAIError as exc:
            raise ProviderError(UNAVAILABLE, detail=f"embeddings: {exc!r}") from exc
        ordered = sorted(response.data, key=lambda item: item.index)
        return [list(item.embedding) for item in ordered]
