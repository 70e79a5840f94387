"""ZhipuAI CogView images. The SDK is synchronous, so each request runs in a worker thread;
CogView answers with a short-lived URL, which is downloaded in the same thread."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import zhipuai

from services.images import REFUSED, UNAVAILABLE, ImageRefused
from services.providers.http_errors import StatusErrors
from services.types import ProviderError

# ZhipuAI's error code for prompts or images its content filter blocks.
CONTENT_FILTER_CODES = {"1301"}


def _is_content_filter(exc: zhipuai.APIStatusError) -> bool:
    try:
        error = exc.response.json().get("error", {})
    except ValueError:
        return False
    return str(error.get("code")) in CONTENT_FILTER_CODES


class ZhipuAIImageGenerator:
    """An :class:`~services.types.ImageGenerator` over CogView (one image per request)."""

    def __init__(
        self,
        *,
        api_key: str,
        model: str = "cogview-3-flash",
        base_url: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 1,
    ) -> None:
        self.name = f"zhipuai:{model}"
        self.model = model
        self._timeout = timeout
        self._client = zhipuai.ZhipuAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )
        self._errors = StatusErrors(
            provider=self.name,
            model=model,
            unavailable=UNAVAILABLE,
            service="image",
            key_setting="ZHIPUAI_API_KEY",
        )

    def _draw(self, prompt: str, size: str) -> bytes:
        try:
            response: Any = self._client.images.generations(
                model=self.model, prompt=prompt, size=size
            )
            item = response.data[0]
            if item.b64_json:
                return base64.b64decode(item.b64_json)
            download = httpx.get(item.url, timeout=self._timeout, follow_redirects=True)
            download.raise_for_status()
            return download.content
        except zhipuai.APIStatusError as exc:
            if exc.status_code == 400 and _is_content_filter(exc):
                raise ImageRefused(REFUSED, detail="zhipuai images: content filter") from exc
            raise self._errors.to_provider_error(exc.status_code, str(exc)) from exc
        except (zhipuai.ZhipuAIError, httpx.HTTPError, IndexError, AttributeError) as exc:
            detail = f"zhipuai images: {type(exc).__name__}: {exc}"
            raise ProviderError(UNAVAILABLE, detail=detail) from exc

    async def generate(self, prompt: str, *, size: str, n: int) -> list[bytes]:
        return list(
            await asyncio.gather(*(asyncio.to_thread(self._draw, prompt, size) for _ in range(n)))
        )
