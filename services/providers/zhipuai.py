"""ZhipuAI GLM chat. The SDK is synchronous, so its stream is drained in a worker thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import zhipuai

from services.providers.common import estimate_tokens, to_chat_messages
from services.providers.http_errors import StatusErrors
from services.types import ProviderError, Turn

UNAVAILABLE = "The text service is unavailable right now, try again in a minute."
_DONE = object()


class ZhipuAITextGenerator:
    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str | None = None,
        timeout: float = 60.0,
        context_window: int = 128_000,
        max_retries: int = 2,
    ) -> None:
        self.name = f"zhipuai:{model}"
        self.model = model
        self.context_window = context_window
        self._client = zhipuai.ZhipuAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )
        self._errors = StatusErrors(
            provider=self.name,
            model=model,
            unavailable=UNAVAILABLE,
            service="text",
            key_setting="ZHIPUAI_API_KEY",
        )

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def _open(self, turns: Sequence[Turn], max_tokens: int, temperature: float) -> Iterator[Any]:
        # GLM rejects temperature 0; the SDK maps <= 0 to greedy decoding itself.
        response: Any = self._client.chat.completions.create(
            model=self.model,
            messages=to_chat_messages(turns),
            max_tokens=max_tokens,
            temperature=temperature,
            stream=True,
        )
        return iter(response)

    async def stream(
        self, turns: Sequence[Turn], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()

        def pump() -> None:
            try:
                for chunk in self._open(turns, max_tokens, temperature):
                    if stop.is_set():
                        break
                    if chunk.choices and chunk.choices[0].delta.content:
                        loop.call_soon_threadsafe(queue.put_nowait, chunk.choices[0].delta.content)
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)
            except Exception as exc:  # the SDK raises its own and httpx's errors
                loop.call_soon_threadsafe(queue.put_nowait, exc)

        worker = loop.run_in_executor(None, pump)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, zhipuai.APIStatusError):
                    raise self._errors.to_provider_error(item.status_code, str(item)) from item
                if isinstance(item, Exception):
                    raise ProviderError(
                        UNAVAILABLE, detail=f"zhipuai error: {type(item).__name__}: {item}"
                    ) from item
                assert isinstance(item, str)
                yield item
        finally:
            stop.set()
            await asyncio.shield(worker)
