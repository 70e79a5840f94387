"""OpenAI Images API (DALL·E, gpt-image), or any server that speaks it: ours included."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import openai

from services.images import BAD_SIZE, REFUSED, UNAVAILABLE, ImageRefused, ImageSizeError
from services.providers.http_errors import StatusErrors, openai_key_setting
from services.types import ProviderError

log = logging.getLogger(__name__)

# Error codes the Images API uses when its moderation refuses a prompt.
POLICY_CODES = {"content_policy_violation", "moderation_blocked"}


def _is_policy_refusal(exc: openai.APIStatusError) -> bool:
    body: Any = exc.body
    code = getattr(exc, "code", None) or (body.get("code") if isinstance(body, dict) else None)
    return code in POLICY_CODES or "content policy" in str(exc.message).lower()


class OpenAIImageGenerator:
    """An :class:`~services.types.ImageGenerator` over the Images API, returning PNG bytes."""

    def __init__(
        self,
        *,
        api_key: str,
        model: str = "dall-e-3",
        base_url: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 1,
    ) -> None:
        self.name = f"openai:{model}"
        self.model = model
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )
        self._errors = StatusErrors(
            provider=self.name,
            model=model,
            unavailable=UNAVAILABLE,
            service="image",
            key_setting=openai_key_setting(base_url),
        )

    async def generate(self, prompt: str, *, size: str, n: int) -> list[bytes]:
        # DALL·E 3 draws one image per request.
        if self.model == "dall-e-3" and n > 1:
            batches = await asyncio.gather(*(self._request(prompt, size, 1) for _ in range(n)))
            return [image for batch in batches for image in batch]
        return await self._request(prompt, size, n)

    async def _request(self, prompt: str, size: str, n: int) -> list[bytes]:
        options: dict[str, Any] = {}
        # gpt-image models always answer in base64 and reject the parameter.
        if not self.model.startswith("gpt-image"):
            options["response_format"] = "b64_json"
        try:
            response: Any = await self._client.images.generate(
                model=self.model, prompt=prompt, n=n, size=size, **options
            )
        except openai.BadRequestError as exc:
            if _is_policy_refusal(exc):
                raise ImageRefused(
                    REFUSED, detail=f"openai images: refused: {exc.message}"
                ) from exc
            if "size" in str(exc.message).lower():
                raise ImageSizeError(BAD_SIZE, detail=f"openai images: {exc.message}") from exc
            raise self._errors.to_provider_error(exc.status_code, exc.message) from exc
        except openai.APIStatusError as exc:
            raise self._errors.to_provider_error(exc.status_code, exc.message) from exc
        except openai.OpenAIError as exc:
            raise ProviderError(UNAVAILABLE, detail=f"openai images: {exc!r}") from exc
        images = [base64.b64decode(item.b64_json) for item in response.data or [] if item.b64_json]
        if not images:
            raise ProviderError(UNAVAILABLE, detail="openai images: no b64_json in the answer")
        return images
