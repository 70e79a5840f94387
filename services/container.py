"""The services a handler can use, built once by the composition root (`bot.compose`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from services.qa.config import QAConfig
from services.types import Embedder, ImageGenerator, SentimentAnalyzer, TextGenerator

if TYPE_CHECKING:  # scipy and the store load only where recommendations are used
    from services.recommend.service import Recommender

if TYPE_CHECKING:  # knowledge base and QA (issue 6): the index loads only where QA is used
    from services.kb.knowledge import KnowledgeBase


@dataclass(frozen=True, slots=True)
class GenerationConfig:
    system_prompt: str
    max_tokens: int
    temperature: float
    # The text model answers in English only (the packaged SmolLM2): a user writing Chinese is
    # told so once, with what an operator can set.
    english_only: bool = False


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """What /image accepts; providers may be stricter (hosted APIs take a few sizes only)."""

    default_size: str = "512x512"
    max_n: int = 4
    max_side: int = 1024
    max_prompt_chars: int = 1000


@runtime_checkable
class Warmable(Protocol):
    """A provider that can load its model ahead of the first request."""

    async def warm(self) -> None: ...


@dataclass(slots=True)
class Services:
    text: TextGenerator
    generation: GenerationConfig
    # Optional services: a handler whose service is not configured says so in one line.
    sentiment: SentimentAnalyzer | None = None
    embeddings: Embedder | None = None
    images: ImageGenerator | None = None
    image_config: ImageConfig = field(default_factory=ImageConfig)
    # /buy, /purchases and /recommend (issue 7); built from ``embeddings`` by bot.compose.
    recommendations: Recommender | None = None
    # --- knowledge base and QA (issue 6) ---
    # None when no embeddings service is configured; questions then go to plain chat.
    kb: KnowledgeBase | None = None
    qa: QAConfig = field(default_factory=QAConfig)
    # --- end knowledge base and QA ---
