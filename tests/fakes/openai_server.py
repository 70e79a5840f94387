"""A fake OpenAI-compatible chat server on 127.0.0.1 for the real `openai` and `zhipuai` SDKs.

It speaks the chat-completions protocol (JSON and SSE streaming) on both the OpenAI path
(`/v1/chat/completions`) and ZhipuAI's (`/api/paas/v4/chat/completions`), and image generation
on both (`b64_json` for OpenAI; a URL to download, as CogView answers, for ZhipuAI), and
embeddings on the OpenAI path, and records every request so tests can assert on what the SDKs
sent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.local_http import serve_locally


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, str]]:
        return list(self.body.get("messages", []))


@dataclass
class FakeOpenAIServer:
    reply: str = "Hello from the fake server."
    # When set, every request fails with this HTTP status (500, 429, ...).
    fail_status: int | None = None
    delay: float = 0.0
    # Adds a random 0..jitter seconds to each chat answer, so concurrent answers finish out of
    # order.
    jitter: float = 0.0
    # Answer each chat request with its last user message, so a reply names its question.
    echo: bool = False
    # Image routes: the PNG bytes every generated image carries, and a content-policy refusal.
    image: bytes = b"\x89PNG\r\n\x1a\nfake"
    refuse_images: bool = False
    requests: list[RecordedRequest] = field(default_factory=list)
    port: int = 0
    # Set when the first chat request arrives; `release()` ends every `delay` early.
    received: asyncio.Event = field(default_factory=asyncio.Event)
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    def release(self) -> None:
        """Answer the waiting requests now, and later ones without delay."""
        self.delay = 0
        self._released.set()

    @property
    def openai_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def zhipuai_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/paas/v4"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/api/paas/v4/chat/completions", self._chat)
        app.router.add_post("/v1/images/generations", self._images)
        app.router.add_post("/api/paas/v4/images/generations", self._images)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/files/image.png", self._file)
        self._runner, self.port = await serve_locally(app)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(RecordedRequest(request.path, dict(request.headers), body))
        self.received.set()
        delay = self.delay + random.uniform(0, self.jitter)
        if delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), delay)
        if self.fail_status is not None:
            return self._failure(request, self.fail_status)
        model = body.get("model", "fake")
        reply = self._reply(body)
        if body.get("stream"):
            return await self._stream(request, model, reply)
        return web.json_response(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    async def _images(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(RecordedRequest(request.path, dict(request.headers), body))
        zhipu = request.path.startswith("/api/paas")
        if self.refuse_images:
            # Each provider's own refusal: OpenAI's error code, and ZhipuAI's content filter.
            error = (
                {"code": "1301", "message": "contentFilter: unsafe or sensitive content"}
                if zhipu
                else {
                    "message": "Your request was rejected by our content policy.",
                    "type": "invalid_request_error",
                    "code": "content_policy_violation",
                }
            )
            return web.json_response({"error": error}, status=400)
        if self.fail_status is not None:
            return self._failure(request, self.fail_status)
        count = 1 if zhipu else int(body.get("n", 1))
        item = (
            {"url": f"http://127.0.0.1:{self.port}/files/image.png"}
            if zhipu
            else {"b64_json": base64.b64encode(self.image).decode()}
        )
        return web.json_response({"created": int(time.time()), "data": [item] * count})

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(RecordedRequest(request.path, dict(request.headers), body))
        if self.fail_status is not None:
            return self._failure(request, self.fail_status)
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [1.0, float(len(text)), 0.0]}
            for i, text in enumerate(texts)
        ]
        usage = {"prompt_tokens": 1, "total_tokens": 1}
        return web.json_response({"object": "list", "data": data, "model": "m", "usage": usage})

    def _failure(self, request: web.Request, status: int) -> web.Response:
        error = {"message": "injected failure", "type": "server_error"}
        if status == 401:
            # As OpenAI does: the refused key is echoed back, so it must never be logged as is.
            key = request.headers.get("Authorization", "").removeprefix("Bearer ")
            error = {"message": f"Incorrect API key provided: {key}", "type": "invalid_api_key"}
        return web.json_response({"error": error}, status=status)

    async def _file(self, request: web.Request) -> web.Response:
        return web.Response(body=self.image, content_type="image/png")

    def _reply(self, body: dict[str, Any]) -> str:
        if not self.echo:
            return self.reply
        said = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
        return str(said[-1]) if said else self.reply

    async def _stream(self, request: web.Request, model: str, reply: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        words = reply.split(" ")
        for index, word in enumerate(words):
            piece = word if index == len(words) - 1 else word + " "
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        done = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        await response.write(f"data: {json.dumps(done)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


async def main() -> None:  # `python -m tests.fakes.openai_server` for manual runs
    server = FakeOpenAIServer()
    await server.start()
    print(server.openai_base_url, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
