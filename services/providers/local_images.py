"""Local text-to-image with diffusers' ``AutoPipelineForText2Image``.

The default, stabilityai/sd-turbo, draws a 512x512 image in 1–4 steps: well under a second on
a GPU (fp16), tens of seconds on a CPU, which works but is logged as slow. Images of the same
size requested together share one pipeline call. The pipeline's safety checker stays on where
the model ships one; images it flags are withheld.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from services.images import (
    BAD_SIZE,
    FLAGGED,
    UNAVAILABLE,
    ImageRefused,
    ImageSizeError,
    parse_size,
    to_png,
)
from services.modelhost.batcher import MicroBatcher
from services.modelhost.device import pick_device
from services.types import ProviderError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "stabilityai/sd-turbo"
# After a failed load, image requests are refused at once for this long before the next try.
RELOAD_AFTER = 300
NOT_LOADED = "Images are not available on this server right now: the image model did not load."


@dataclass(frozen=True, slots=True)
class ImageJob:
    prompt: str
    width: int
    height: int


def _size_key(job: ImageJob) -> Hashable:
    return (job.width, job.height)


def default_steps(model: str) -> tuple[int, float]:
    """Steps and guidance scale: distilled turbo models draw in one step without guidance."""
    if "turbo" in model.lower():
        return 1, 0.0
    return 25, 7.5


class LocalImageGenerator:
    """An :class:`~services.types.ImageGenerator` running a diffusers pipeline on this host."""

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        device: str = "auto",
        steps: int | None = None,
        guidance: float | None = None,
        max_batch: int = 4,
        max_wait_ms: float = 20.0,
        max_queue: int = 16,
    ) -> None:
        self.name = f"local:{model}"
        self.model_id = model
        self._device = pick_device(device)
        default, default_guidance = default_steps(model)
        self._steps = steps or default
        self._guidance = default_guidance if guidance is None else guidance
        self._pipeline: Any = None
        self._failed_at: float | None = None  # when loading last failed (monotonic)
        self._load_lock = threading.Lock()
        self.batcher: MicroBatcher[ImageJob, bytes | None] = MicroBatcher(
            self._draw,
            name=f"images:{model}",
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_queue=max_queue,
            key=_size_key,
        )

    def _load(self) -> Any:
        with self._load_lock:
            if self._pipeline is None:
                import torch
                from diffusers import AutoPipelineForText2Image

                failed = self._failed_at
                if failed is not None and time.monotonic() - failed < RELOAD_AFTER:
                    # A model hub that cannot be reached made the last try wait ~25 s in
                    # retries; every request would wait again for the same answer.
                    raise ProviderError(
                        NOT_LOADED,
                        detail=f"local images: {self.model_id} failed to load; next try in "
                        f"{RELOAD_AFTER - (time.monotonic() - failed):.0f} s",
                        transient=False,
                    )
                # fp16 is what these pipelines are tuned for on CUDA; CPUs and MPS need fp32.
                dtype = torch.float16 if self._device.startswith("cuda") else torch.float32
                auto: Any = AutoPipelineForText2Image
                try:
                    pipeline = auto.from_pretrained(self.model_id, dtype=dtype)
                except Exception as exc:
                    self._failed_at = time.monotonic()
                    log.error(
                        "image model %s could not be loaded (%r); /image is refused for %d s",
                        self.model_id,
                        exc,
                        RELOAD_AFTER,
                    )
                    raise ProviderError(
                        NOT_LOADED,
                        detail=f"local images: loading {self.model_id}: {exc!r}",
                        transient=False,
                    ) from exc
                self._failed_at = None
                pipeline.set_progress_bar_config(disable=True)
                self._pipeline = pipeline.to(self._device)
                if getattr(pipeline, "safety_checker", None) is None:
                    log.info("image model %s has no safety checker", self.model_id)
                if self._device == "cpu":
                    log.warning(
                        "image generation runs on the CPU: expect tens of seconds per image "
                        "(set MODEL_DEVICE=cuda or use MODEL_HOST_URL with a GPU host)"
                    )
                log.info("loaded image model %s on %s", self.model_id, self._device)
        return self._pipeline

    async def warm(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._load)

    def _draw(self, jobs: list[ImageJob]) -> list[bytes | None]:
        """One pipeline call for a batch of same-size jobs; None where the checker flagged."""
        import torch

        pipeline = self._load()
        with torch.inference_mode():
            output = pipeline(
                prompt=[job.prompt for job in jobs],
                width=jobs[0].width,
                height=jobs[0].height,
                num_inference_steps=self._steps,
                guidance_scale=self._guidance,
                output_type="pil",
            )
        flagged = getattr(output, "nsfw_content_detected", None) or [False] * len(jobs)
        return [
            None if bad else to_png(image)
            for image, bad in zip(output.images, flagged, strict=True)
        ]

    async def generate(self, prompt: str, *, size: str, n: int) -> list[bytes]:
        parsed = parse_size(size)
        # The VAE works on 8x8 pixel cells.
        if parsed is None or parsed[0] % 8 or parsed[1] % 8:
            raise ImageSizeError(BAD_SIZE, detail=f"local images: bad size {size!r}")
        width, height = parsed
        try:
            images = await self.batcher.run([ImageJob(prompt, width, height)] * n)
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(UNAVAILABLE, detail=f"local images: {exc!r}") from exc
        kept = [image for image in images if image is not None]
        if not kept:
            raise ImageRefused(FLAGGED, detail="local images: all flagged by the safety checker")
        return kept
