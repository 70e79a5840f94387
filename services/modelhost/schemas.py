"""Request bodies of the model server, validated strictly (they are also its OpenAPI schemas).

They follow the OpenAI API where one exists; fields we do not use are accepted and ignored,
as OpenAI-compatible servers do, so that every OpenAI client works unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

MAX_TOKENS = 4096
MAX_INPUTS = 2048
MAX_TEXT_CHARS = 100_000
# Every character is tokenized before anything else happens: this bounds one request's work
# while leaving room for a 128k-token context window in English.
MAX_TOTAL_CHARS = 500_000
SIZE_PATTERN = r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$"

Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
Prompt = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
Texts = Annotated[list[Text], Field(min_length=1, max_length=MAX_INPUTS)]
Parts = Annotated[list["TextPart"], Field(max_length=256)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


def _check_total(texts: Sequence[str], field: str) -> None:
    total = sum(len(text) for text in texts)
    if total > MAX_TOTAL_CHARS:
        raise ValueError(f"{field} has {total} characters in all; the limit is {MAX_TOTAL_CHARS}")


class TextPart(_Body):
    type: Literal["text"]
    text: Text


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | Parts

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatRequest(_Body):
    model: str | None = Field(default=None, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    stream: bool = False
    n: Literal[1] = 1

    @model_validator(mode="after")
    def _bounded(self) -> ChatRequest:
        _check_total([message.text for message in self.messages], "messages")
        return self


class EmbeddingsRequest(_Body):
    model: str | None = Field(default=None, max_length=256)
    input: Text | Texts
    encoding_format: Literal["float", "base64"] = "float"

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)

    @model_validator(mode="after")
    def _bounded(self) -> EmbeddingsRequest:
        _check_total(self.texts, "input")
        return self


class ImagesRequest(_Body):
    prompt: Prompt
    model: str | None = Field(default=None, max_length=256)
    n: int = Field(default=1, ge=1, le=10)
    size: str | None = Field(default=None, pattern=SIZE_PATTERN)
    response_format: Literal["b64_json"] | None = None


class ClassifyRequest(_Body):
    """vLLM's ``/classify``: one text or a list of them."""

    model: str | None = Field(default=None, max_length=256)
    input: Text | Texts

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)

    @model_validator(mode="after")
    def _bounded(self) -> ClassifyRequest:
        _check_total(self.texts, "input")
        return self


REQUESTS: tuple[type[BaseModel], ...] = (
    ChatRequest,
    EmbeddingsRequest,
    ImagesRequest,
    ClassifyRequest,
)
