"""Batched text generation: requests that arrive together run as one left-padded ``generate``.

Each request keeps its own stream: :class:`RowStreamer` splits every step's new tokens by row
and hands each row's text to that request's ``emit`` callback. Rows stop on their own (end of
sequence, their own ``max_tokens``, or their reader going away) while the others go on; rows
may mix greedy and sampled decoding at different temperatures (:class:`RowSampling`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer

from services.types import Turn

TOP_P = 0.95
REPETITION_PENALTY = 1.1
FinishReason = Literal["stop", "length"]


@dataclass(slots=True)
class GenerationRequest:
    """One chat request inside a batch. ``emit`` is called from the model's thread."""

    turns: Sequence[Turn]
    max_tokens: int
    temperature: float
    emit: Callable[[str], None]
    stop: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True, slots=True)
class GenerationResult:
    tokens: int
    finish_reason: FinishReason


def to_plain_prompt(turns: Sequence[Turn]) -> str:
    """Prompt for models without a chat template (GPT-2 and other base models)."""
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    lines = [f"{names[turn.role]}: {turn.text}" for turn in turns]
    return "\n".join([*lines, "Assistant:"])


def render_prompt(tokenizer: Any, turns: Sequence[Turn], *, is_seq2seq: bool) -> str:
    if is_seq2seq:
        return "\n".join(t.text for t in turns if t.role != "system")
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": t.role, "content": t.text} for t in turns]
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return str(prompt)
    return to_plain_prompt(turns)


def encode_batch(tokenizer: Any, prompts: list[str], *, is_seq2seq: bool, chat: bool) -> Any:
    """Token ids and attention mask; decoder-only models are padded on the left so every
    row's next token follows its own prompt directly."""
    tokenizer.padding_side = "right" if is_seq2seq else "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Chat templates already carry the model's special tokens.
    return tokenizer(
        prompts,
        return_tensors="pt",
        padding=True,
        truncation=is_seq2seq,
        add_special_tokens=not chat,
    )


class RowStreamer(BaseStreamer):  # type: ignore[misc]
    """Decodes each row's new tokens and emits only the text that is new for that row."""

    def __init__(self, tokenizer: Any, requests: Sequence[GenerationRequest], eos: set[int]):
        self._tokenizer = tokenizer
        self._requests = requests
        self._eos = eos
        self.start_len: int | None = None
        self.tokens: list[list[int]] = [[] for _ in requests]
        self.finished: list[FinishReason | None] = [None] * len(requests)
        self._printed = [""] * len(requests)

    def put(self, value: torch.Tensor) -> None:
        if self.start_len is None:  # the first call carries the prompt (or decoder start)
            self.start_len = int(value.shape[-1]) if value.dim() > 1 else 1
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.finished[row] is not None:
                continue
            if token in self._eos:
                self.finished[row] = "stop"
                self._flush(row, final=True)
                continue
            self.tokens[row].append(int(token))
            if self._requests[row].stop.is_set():
                self.finished[row] = "stop"
            elif len(self.tokens[row]) >= self._requests[row].max_tokens:
                self.finished[row] = "length"
            self._flush(row, final=self.finished[row] is not None)

    def end(self) -> None:
        for row in range(len(self._requests)):
            if self.finished[row] is None:
                self.finished[row] = "length"
            self._flush(row, final=True)

    def _flush(self, row: int, *, final: bool) -> None:
        text = self._tokenizer.decode(self.tokens[row], skip_special_tokens=True)
        # A multi-byte character split across tokens decodes as U+FFFD until it is complete;
        # at the end it never will be (the reply was cut at its length): leave it out.
        if text.endswith("\ufffd"):
            if not final:
                return
            text = text.rstrip("\ufffd")
        # Text already sent cannot be taken back; were decoding ever to rewrite a prefix,
        # only what lies past it is sent.
        piece = text[len(self._printed[row]) :]
        if piece:
            self._printed[row] = text
            self._requests[row].emit(piece)


class RowLimits(StoppingCriteria):  # type: ignore[misc]
    """Per-row stop: a row ends at its own ``max_tokens`` or when its reader has gone."""

    def __init__(self, streamer: RowStreamer, requests: Sequence[GenerationRequest]) -> None:
        self._streamer = streamer
        self._requests = requests

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        generated = input_ids.shape[1] - (self._streamer.start_len or input_ids.shape[1])
        done = [
            generated >= r.max_tokens or r.stop.is_set() or f is not None
            for r, f in zip(self._requests, self._streamer.finished, strict=True)
        ]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class RowSampling(LogitsProcessor):  # type: ignore[misc]
    """Temperature and nucleus sampling per row; rows at temperature 0 keep only their argmax."""

    def __init__(self, temperatures: Sequence[float], *, top_p: float = TOP_P) -> None:
        self._temps = torch.tensor([t if t > 0 else 1.0 for t in temperatures]).unsqueeze(1)
        self._greedy = torch.tensor([t <= 0 for t in temperatures]).unsqueeze(1)
        self._top_p = top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        greedy = self._greedy.to(scores.device)
        best = scores.argmax(-1, keepdim=True)
        scores = scores / self._temps.to(scores.device, scores.dtype)
        ordered, order = torch.sort(scores, descending=False)
        cumulative = ordered.softmax(-1).cumsum(-1)
        drop = cumulative <= (1 - self._top_p)
        drop[..., -1:] = False  # the most likely token always survives
        scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
        one_hot = torch.full_like(scores, float("-inf")).scatter(1, best, 0.0)
        return torch.where(greedy, one_hot, scores)


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids = model.generation_config.eos_token_id
    if ids is None:
        ids = tokenizer.eos_token_id
    values = ids if isinstance(ids, list) else [ids]
    return {int(i) for i in values if i is not None}


def generate_batch(
    model: Any,
    tokenizer: Any,
    requests: Sequence[GenerationRequest],
    *,
    device: str,
    is_seq2seq: bool,
) -> list[GenerationResult]:
    """Run ``requests`` as one ``generate`` call, streaming each row to its own ``emit``."""
    chat = bool(getattr(tokenizer, "chat_template", None)) and not is_seq2seq
    prompts = [render_prompt(tokenizer, r.turns, is_seq2seq=is_seq2seq) for r in requests]
    inputs = encode_batch(tokenizer, prompts, is_seq2seq=is_seq2seq, chat=chat).to(device)
    streamer = RowStreamer(tokenizer, requests, eos_ids(model, tokenizer))
    sampling: dict[str, Any] = {"do_sample": False}
    if any(r.temperature > 0 for r in requests):
        # The per-row processor does all the warping; generate's own warpers stay neutral.
        sampling = {
            "do_sample": True,
            "temperature": 1.0,
            "top_p": 1.0,
            "top_k": 0,
            "logits_processor": LogitsProcessorList(
                [RowSampling([r.temperature for r in requests])]
            ),
        }
    with torch.inference_mode():
        model.generate(
            **inputs,
            max_new_tokens=max(r.max_tokens for r in requests),
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([RowLimits(streamer, requests)]),
            pad_token_id=tokenizer.pad_token_id,
            repetition_penalty=REPETITION_PENALTY,
            **sampling,
        )
    return [
        GenerationResult(tokens=len(tokens), finish_reason=finished or "length")
        for tokens, finished in zip(streamer.tokens, streamer.finished, strict=True)
    ]
