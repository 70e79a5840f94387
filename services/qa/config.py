"""QA settings, kept apart so the service container can hold them without loading the KB."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QAConfig:
    """How questions are answered. ``capable_model``: the text model can be trusted to rewrite
    follow-ups and write grounded answers (hosted models); otherwise answers are extractive."""

    top_k: int = 4
    max_sources: int = 3
    capable_model: bool = False
