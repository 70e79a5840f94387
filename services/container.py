"""The services a handler can use, built once by the composition root (`bot.compose`)."""

from __future__ import annotations

from dataclasses import dataclass

from services.types import TextGenerator


@dataclass(frozen=True, slots=True)
class GenerationConfig:
    system_prompt: str
    max_tokens: int
    temperature: float


@dataclass(slots=True)
class Services:
    text: TextGenerator
    generation: GenerationConfig
