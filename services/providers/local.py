"""Local transformers text generation: any causal LM (GPT-2, SmolLM2, …) or seq2seq model (T5).

Requests go through the model host's micro-batcher: those that arrive together run as one
left-padded ``generate`` call in the model's thread, and each request still streams its own
tokens back to the event loop through a queue as they are produced.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from services.modelhost import offline
from services.modelhost.batcher import BusyError, MicroBatcher
from services.modelhost.device import pick_device, pick_dtype
from services.modelhost.generation import (
    GenerationRequest,
    GenerationResult,
    generate_batch,
    to_plain_prompt,
)
from services.types import ProviderError, Turn

__all__ = ["LocalTextGenerator", "to_plain_prompt"]

log = logging.getLogger(__name__)
_DONE = object()
FAILED = "The local text model failed on this message, try again or /reset the conversation."


class LocalTextGenerator:
    """A local text model; concurrent ``stream`` calls share batched ``generate`` calls."""

    def __init__(
        self,
        *,
        model: str,
        models_dir: Path,
        device: str = "auto",
        context_window: int | None = None,
        max_batch: int = 8,
        max_wait_ms: float = 25.0,
        max_queue: int = 64,
    ) -> None:
        self.name = f"local:{model}"
        self.model_id = model
        self._models_dir = models_dir
        self._device = pick_device(device)
        self._context_override = context_window
        self._tokenizer: Any = None
        # The model thread pads and decodes with its own tokenizer: a Rust tokenizer that one
        # thread reconfigures for padding cannot be used by another meanwhile.
        self._worker_tokenizer: Any = None
        self._config: Any = None
        self._model: Any = None
        self._load_lock = threading.Lock()
        self.batcher: MicroBatcher[GenerationRequest, GenerationResult] = MicroBatcher(
            self._generate_batch,
            name=f"text:{model}",
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_queue=max_queue,
        )

    # --- loading -----------------------------------------------------------------------

    def _source(self) -> str:
        return offline.resolve(self.model_id, self._models_dir)

    def _load_tokenizer(self) -> None:
        from transformers import AutoConfig, AutoTokenizer

        with self._load_lock:
            if self._tokenizer is None:
                source = self._source()
                self._config = AutoConfig.from_pretrained(source)
                self._tokenizer = AutoTokenizer.from_pretrained(source)

    def _load_model(self) -> Any:
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        self._load_tokenizer()
        with self._load_lock:
            if self._model is None:
                source = self._source()
                auto = AutoModelForSeq2SeqLM if self._is_seq2seq else AutoModelForCausalLM
                model: Any = auto.from_pretrained(source, dtype=pick_dtype(self._device))
                self._worker_tokenizer = AutoTokenizer.from_pretrained(source)
                self._model = model.to(self._device).eval()
                log.info("loaded text model %s on %s", self.model_id, self._device)
        return self._model

    async def warm(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._load_model)

    @property
    def _is_seq2seq(self) -> bool:
        return bool(getattr(self._config, "is_encoder_decoder", False))

    @property
    def context_window(self) -> int:
        if self._context_override:
            return self._context_override
        self._load_tokenizer()
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(self._config, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return 512

    def count_tokens(self, text: str) -> int:
        self._load_tokenizer()
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    # --- generation --------------------------------------------------------------------

    def _generate_batch(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        model = self._load_model()
        return generate_batch(
            model,
            self._worker_tokenizer,
            requests,
            device=self._device,
            is_seq2seq=self._is_seq2seq,
        )

    async def stream(
        self, turns: Sequence[Turn], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()

        def emit(text: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, text)

        request = GenerationRequest(turns, max_tokens, temperature, emit)
        job = asyncio.ensure_future(self.batcher.submit(request))

        def finished(done: asyncio.Future[GenerationResult]) -> None:
            if not done.cancelled():
                done.exception()  # retrieved here, raised below when the reader is still there
            # Emitted text is scheduled on the loop before the batch's result: _DONE comes last.
            queue.put_nowait(_DONE)

        job.add_done_callback(finished)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                assert isinstance(item, str)
                yield item
            try:
                job.result()
            except BusyError:
                raise
            except Exception as exc:
                raise ProviderError(FAILED, detail=f"local generation: {exc!r}") from exc
        finally:
            # A reader that stops early (client gone) ends its row; the others carry on.
            request.stop.set()
            if not job.done():
                job.cancel()
