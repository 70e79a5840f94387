"""The model host over HTTP: OpenAI-compatible routes plus vLLM-style ``/classify``.

Bots on many machines share one GPU server this way, and the same client code talks to
OpenAI, vLLM or this server. ``switchboard serve-models`` serves :func:`build_model_app`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from services.container import Warmable
from services.images import ImageRefused, ImageSizeError, parse_size
from services.modelhost.batcher import BusyError
from services.modelhost.openapi import openapi_spec
from services.modelhost.schemas import (
    ChatRequest,
    ClassifyRequest,
    EmbeddingsRequest,
    ImagesRequest,
)
from services.modelhost.window import PromptTooLong, fit_prompt
from services.providers.common import estimate_tokens
from services.types import (
    Embedder,
    ImageGenerator,
    ProviderError,
    Role,
    SentimentAnalyzer,
    TextGenerator,
    Turn,
)

log = logging.getLogger(__name__)
B = TypeVar("B", bound=BaseModel)
Endpoint = Callable[[Request], Awaitable[Response]]
DEFAULT_MAX_TOKENS = 256
# Bodies are read whole before validation: refuse, before reading it all, any body bigger than a
# valid request can be (schemas.MAX_TOTAL_CHARS characters, up to 6 bytes each JSON-escaped).
MAX_BODY_BYTES = 4 * 1024 * 1024
ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}


@dataclass(slots=True)
class ModelHost:
    """The models one server process serves; a missing one answers 404."""

    text: TextGenerator | None = None
    embeddings: Embedder | None = None
    sentiment: SentimentAnalyzer | None = None
    images: ImageGenerator | None = None
    image_size: str = "512x512"
    max_images: int = 4
    max_side: int = 1024
    api_key: str | None = None
    # Kind -> why its model did not load. Such a kind is left out of /v1/models and named in
    # /healthz until a request to it succeeds and its model then loads (see ModelServer._recheck).
    failed: dict[str, str] = field(default_factory=dict)

    def served(self) -> dict[str, object]:
        """Kind -> model, for every kind this server was given."""
        kinds = {
            "chat": self.text,
            "embeddings": self.embeddings,
            "classify": self.sentiment,
            "images": self.images,
        }
        return {kind: model for kind, model in kinds.items() if model is not None}

    def model_id(self, kind: str) -> str:
        return str(getattr(self.served()[kind], "name", kind)).removeprefix("local:")

    def models(self) -> dict[str, str]:
        """Kind -> model id of the models ready to serve, as /v1/models lists them."""
        return {kind: self.model_id(kind) for kind in self.served() if kind not in self.failed}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, kind: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code

    def response(self) -> JSONResponse:
        body = {
            "error": {"message": self.message, "type": self.kind, "param": None, "code": self.code}
        }
        headers = {"Retry-After": "1"} if self.status == 503 else None
        return JSONResponse(body, status_code=self.status, headers=headers)


def _too_large() -> ApiError:
    return ApiError(
        413,
        f"request body over {MAX_BODY_BYTES // 1024 // 1024} MiB",
        kind="invalid_request_error",
        code="request_too_large",
    )


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():  # chunked bodies declare no length
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _too_large()
    return bytes(body)


async def _parse(request: Request, schema: type[B]) -> B:
    raw = await _read_body(request)
    try:
        data = json.loads(raw)
        return schema.model_validate(data, strict=True)
    except (ValueError, UnicodeDecodeError) as exc:  # ValidationError is a ValueError
        message = _first_error(exc) if isinstance(exc, ValidationError) else "invalid JSON body"
        raise ApiError(400, message, kind="invalid_request_error") from exc


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def _need(model: Any, kind: str) -> Any:
    if model is None:
        raise ApiError(
            404, f"this server has no {kind} model", kind="not_found_error", code="model_not_found"
        )
    return model


class ModelServer:
    """Request handlers over one :class:`ModelHost`."""

    def __init__(self, host: ModelHost) -> None:
        self.host = host

    def guarded(self, endpoint: Endpoint, kind: str | None = None) -> Endpoint:
        """Bearer-token check, and every failure as an OpenAI-style error body. After a success
        for a ``kind`` whose model failed to load, the load is checked again."""

        async def handle(request: Request) -> Response:
            try:
                self._authorise(request)
                response = await endpoint(request)
                if kind in self.host.failed and response.status_code < 400:
                    await self._recheck(kind)
                return response
            except ApiError as exc:
                return exc.response()
            except BusyError as exc:
                return ApiError(
                    503, f"busy, try again: {exc.detail}", kind="server_busy"
                ).response()
            except ProviderError as exc:
                log.warning("model failed on %s: %s", request.url.path, exc.detail)
                return ApiError(500, exc.user_message, kind="server_error").response()
            except Exception:
                log.exception("model server failed on %s", request.url.path)
                return ApiError(500, "the model failed", kind="server_error").response()

        return handle

    async def _recheck(self, kind: str) -> None:
        # A success alone proves little: the sentiment model answers Chinese without loading
        # MiniLM. Loading again is immediate for a model that is loaded by now.
        model = self.host.served()[kind]
        if isinstance(model, Warmable):
            try:
                await model.warm()
            except Exception as exc:
                log.warning("the %s model still does not load: %r", kind, exc)
                return
        self.host.failed.pop(kind, None)
        log.info("the %s model loads now: serving it again", kind)

    def _authorise(self, request: Request) -> None:
        if not self.host.api_key:
            return
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not secrets.compare_digest(given.encode(), self.host.api_key.encode()):
            raise ApiError(401, "missing or wrong API key", kind="authentication_error")

    async def models(self, request: Request) -> Response:
        created = int(time.time())
        data = [
            {
                "id": model,
                "object": "model",
                "created": created,
                "owned_by": "switchboard",
                "kind": kind,
            }
            for kind, model in self.host.models().items()
        ]
        return JSONResponse({"object": "list", "data": data})

    async def chat(self, request: Request) -> Response:
        body = await _parse(request, ChatRequest)
        text: TextGenerator = _need(self.host.text, "chat")
        turns = [Turn(ROLES[m.role], m.text) for m in body.messages]
        max_tokens = body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS
        try:
            # Tokenizing a long conversation takes a while: other requests go on meanwhile.
            turns, prompt_tokens = await asyncio.to_thread(
                fit_prompt, text, turns, max_tokens=max_tokens
            )
        except PromptTooLong as exc:
            raise ApiError(
                400, str(exc), kind="invalid_request_error", code="context_length_exceeded"
            ) from exc
        temperature = 1.0 if body.temperature is None else body.temperature
        chunks = aiter(text.stream(turns, max_tokens=max_tokens, temperature=temperature))
        # The first piece is awaited before answering, so "busy" is still a clean 503.
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            first = ""
        model = body.model or self.host.model_id("chat")
        completion = _Completion(model=model, max_tokens=max_tokens, prompt_tokens=prompt_tokens)
        if body.stream:
            return StreamingResponse(
                completion.sse(first, chunks, text), media_type="text/event-stream"
            )
        answer = first + "".join([piece async for piece in chunks])
        return JSONResponse(completion.whole(answer, text.count_tokens(answer)))

    async def embeddings(self, request: Request) -> Response:
        body = await _parse(request, EmbeddingsRequest)
        embedder: Embedder = _need(self.host.embeddings, "embeddings")
        matrix = await embedder.embed(body.texts)
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(row.astype("<f4").tobytes()).decode()
                if body.encoding_format == "base64"
                else row.tolist(),
            }
            for i, row in enumerate(matrix)
        ]
        tokens = sum(estimate_tokens(t) for t in body.texts)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.model or self.host.model_id("embeddings"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def images(self, request: Request) -> Response:
        body = await _parse(request, ImagesRequest)
        generator: ImageGenerator = _need(self.host.images, "images")
        size = body.size or self.host.image_size
        width, height = parse_size(size) or (0, 0)
        if max(width, height) > self.host.max_side or min(width, height) < 64:
            raise ApiError(
                400,
                f"size must be 64 to {self.host.max_side} pixels a side",
                kind="invalid_request_error",
                code="invalid_size",
            )
        if body.n > self.host.max_images:
            raise ApiError(
                400, f"n must be at most {self.host.max_images}", kind="invalid_request_error"
            )
        try:
            images = await generator.generate(body.prompt, size=size, n=body.n)
        except ImageRefused as exc:
            raise ApiError(
                400, exc.user_message, kind="invalid_request_error", code="content_policy_violation"
            ) from exc
        except ImageSizeError as exc:
            raise ApiError(
                400, exc.user_message, kind="invalid_request_error", code="invalid_size"
            ) from exc
        data = [{"b64_json": base64.b64encode(image).decode()} for image in images]
        return JSONResponse({"created": int(time.time()), "data": data})

    async def classify(self, request: Request) -> Response:
        body = await _parse(request, ClassifyRequest)
        analyzer: SentimentAnalyzer = _need(self.host.sentiment, "classify")
        labels = await analyzer.analyze(body.texts)
        tokens = sum(estimate_tokens(t) for t in body.texts)
        return JSONResponse(
            {
                "id": f"classify-{uuid.uuid4().hex}",
                "object": "list",
                "created": int(time.time()),
                "model": body.model or self.host.model_id("classify"),
                "data": [
                    {"index": i, "label": s.label, "score": s.score} for i, s in enumerate(labels)
                ],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


@dataclass(slots=True)
class _Completion:
    model: str
    max_tokens: int
    prompt_tokens: int
    id: str = ""
    created: int = 0

    def __post_init__(self) -> None:
        self.id, self.created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def _finish(self, tokens: int) -> str:
        return "length" if tokens >= self.max_tokens else "stop"

    def whole(self, answer: str, tokens: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer},
                    "finish_reason": self._finish(tokens),
                }
            ],
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": tokens,
                "total_tokens": self.prompt_tokens + tokens,
            },
        }

    def _chunk(self, delta: dict[str, str], finish: str | None = None) -> bytes:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(chunk)}\n\n".encode()

    async def sse(
        self, first: str, rest: AsyncIterator[str], text: TextGenerator
    ) -> AsyncIterator[bytes]:
        answer = first
        try:
            yield self._chunk({"role": "assistant", "content": first})
            async for piece in rest:
                answer += piece
                yield self._chunk({"content": piece})
            yield self._chunk({}, self._finish(text.count_tokens(answer)))
        except ProviderError as exc:  # headers are sent: the error travels in the stream
            log.warning("chat stream failed: %s", exc.detail)
            error = {"error": {"message": exc.user_message, "type": "server_error"}}
            yield f"data: {json.dumps(error)}\n\n".encode()
        finally:
            await _close(rest)
        yield b"data: [DONE]\n\n"


async def _close(chunks: AsyncIterator[str]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()


def build_model_app(host: ModelHost) -> Starlette:
    server = ModelServer(host)
    spec = openapi_spec(host)

    async def openapi(request: Request) -> Response:
        return JSONResponse(spec)

    async def healthz(request: Request) -> Response:
        # Liveness stays 200: the models that did load still serve. Why one failed is in the
        # log only: this route needs no key, and load errors name paths.
        status = "degraded" if host.failed else "ok"
        return JSONResponse(
            {"status": status, "models": host.models(), "failed": sorted(host.failed)}
        )

    routes = [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/models", server.guarded(server.models), methods=["GET"]),
        Route("/v1/chat/completions", server.guarded(server.chat, "chat"), methods=["POST"]),
        Route("/v1/embeddings", server.guarded(server.embeddings, "embeddings"), methods=["POST"]),
        Route("/v1/images/generations", server.guarded(server.images, "images"), methods=["POST"]),
        Route("/classify", server.guarded(server.classify, "classify"), methods=["POST"]),
    ]
    return Starlette(routes=routes)
