"""OpenAI chat completions, or any OpenAI-compatible server (vLLM, TGI, Ollama, ours)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import openai

from services.providers.common import estimate_tokens, to_chat_messages
from services.providers.http_errors import StatusErrors, openai_key_setting
from services.types import ProviderError, Turn

UNAVAILABLE = "The text service is unavailable right now, try again in a minute."


class OpenAITextGenerator:
    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str | None = None,
        timeout: float = 60.0,
        context_window: int = 16_384,
        max_retries: int = 2,
    ) -> None:
        self.name = f"openai:{model}"
        self.model = model
        self.context_window = context_window
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )
        self._errors = StatusErrors(
            provider=self.name,
            model=model,
            unavailable=UNAVAILABLE,
            service="text",
            key_setting=openai_key_setting(base_url),
        )

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    async def stream(
        self, turns: Sequence[Turn], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str]:
        try:
            response: Any = await self._client.chat.completions.create(
                model=self.model,
                messages=to_chat_messages(turns),  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=temperature,
                stream=True,
            )
            async for chunk in response:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except openai.APITimeoutError as exc:
            raise ProviderError(UNAVAILABLE, detail=f"openai timeout: {exc}") from exc
        except openai.APIStatusError as exc:
            raise self._errors.to_provider_error(exc.status_code, exc.message) from exc
        except openai.OpenAIError as exc:
            raise ProviderError(UNAVAILABLE, detail=f"openai error: {type(exc).__name__}") from exc
