"""A fake OpenAI-compatible chat server on 127.0.0.1 for the real `openai` and `zhipuai` SDKs.

It speaks the chat-completions protocol (JSON and SSE streaming) on both the OpenAI path
(`/v1/chat/completions`) and ZhipuAI's (`/api/paas/v4/chat/completions`), and records every
request so tests can assert on what the SDKs sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


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
    requests: list[RecordedRequest] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

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
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(RecordedRequest(request.path, dict(request.headers), body))
        # Sleep in steps so a test that lowers `delay` releases requests already waiting.
        started = time.monotonic()
        while time.monotonic() - started < self.delay:
            await asyncio.sleep(0.05)
        if self.fail_status is not None:
            error = {"error": {"message": "injected failure", "type": "server_error"}}
            return web.json_response(error, status=self.fail_status)
        model = body.get("model", "fake")
        if body.get("stream"):
            return await self._stream(request, model)
        return web.json_response(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self.reply},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    async def _stream(self, request: web.Request, model: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        words = self.reply.split(" ")
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
