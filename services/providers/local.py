"""Local transformers text generation: any causal LM (GPT-2, SmolLM2, …) or seq2seq model (T5).

Generation runs in a worker thread; tokens come back to the event loop through a queue as they
are produced. One generation runs at a time per model.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from services.modelhost import offline
from services.modelhost.device import pick_device, pick_dtype
from services.types import ProviderError, Turn

log = logging.getLogger(__name__)
_DONE = object()
FAILED = "The local text model failed on this message, try again or /reset the conversation."


def to_plain_prompt(turns: Sequence[Turn]) -> str:
    """Prompt for models without a chat template (GPT-2 and other base models)."""
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    lines = [f"{names[turn.role]}: {turn.text}" for turn in turns]
    return "\n".join([*lines, "Assistant:"])


class LocalTextGenerator:
    def __init__(
        self,
        *,
        model: str,
        models_dir: Path,
        device: str = "auto",
        context_window: int | None = None,
    ) -> None:
        self.name = f"local:{model}"
        self._model_id = model
        self._models_dir = models_dir
        self._device = pick_device(device)
        self._context_override = context_window
        self._tokenizer: Any = None
        self._config: Any = None
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._generate_lock = asyncio.Lock()

    # --- loading -----------------------------------------------------------------------

    def _source(self) -> str:
        return offline.resolve(self._model_id, self._models_dir)

    def _load_tokenizer(self) -> None:
        from transformers import AutoConfig, AutoTokenizer

        with self._load_lock:
            if self._tokenizer is None:
                source = self._source()
                self._config = AutoConfig.from_pretrained(source)
                self._tokenizer = AutoTokenizer.from_pretrained(source)

    def _load_model(self) -> Any:
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

        self._load_tokenizer()
        with self._load_lock:
            if self._model is None:
                auto = AutoModelForSeq2SeqLM if self._is_seq2seq else AutoModelForCausalLM
                model: Any = auto.from_pretrained(self._source(), dtype=pick_dtype(self._device))
                self._model = model.to(self._device).eval()
                log.info("loaded text model %s on %s", self._model_id, self._device)
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

    def _encode(self, turns: Sequence[Turn]) -> Any:
        tokenizer = self._tokenizer
        if self._is_seq2seq:
            prompt = "\n".join(t.text for t in turns if t.role != "system")
            return tokenizer(prompt, return_tensors="pt", truncation=True)
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": t.role, "content": t.text} for t in turns]
            return tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        return tokenizer(to_plain_prompt(turns), return_tensors="pt")

    def _generate(
        self,
        turns: Sequence[Turn],
        max_tokens: int,
        temperature: float,
        emit: Any,
        stop: threading.Event,
    ) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

        model = self._load_model()
        tokenizer = self._tokenizer

        class Streamer(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                if text:
                    emit(text)

        class Stopped(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return stop.is_set()

        inputs = self._encode(turns).to(self._device)
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": temperature, "top_p": 0.95}
            if temperature > 0
            else {"do_sample": False}
        )
        pad = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        with torch.inference_mode():
            model.generate(
                **inputs,
                max_new_tokens=max_tokens,
                streamer=Streamer(
                    tokenizer, skip_prompt=not self._is_seq2seq, skip_special_tokens=True
                ),
                stopping_criteria=StoppingCriteriaList([Stopped()]),
                pad_token_id=pad,
                repetition_penalty=1.1,
                **sampling,
            )

    async def stream(
        self, turns: Sequence[Turn], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()

        def emit(text: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, text)

        def work() -> None:
            try:
                self._generate(turns, max_tokens, temperature, emit, stop)
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)
            except Exception as exc:
                loop.call_soon_threadsafe(queue.put_nowait, exc)

        async with self._generate_lock:
            worker = loop.run_in_executor(None, work)
            try:
                while True:
                    item = await queue.get()
                    if item is _DONE:
                        break
                    if isinstance(item, Exception):
                        raise ProviderError(FAILED, detail=f"local generation: {item!r}") from item
                    assert isinstance(item, str)
                    yield item
            finally:
                stop.set()
                await asyncio.shield(worker)
