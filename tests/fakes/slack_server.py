"""A fake Slack Web API on 127.0.0.1 that speaks the real protocol, so slack_sdk runs unchanged.

It answers the methods the adapter uses, records every call, can refuse a method or rate-limit
it once (HTTP 429 with Retry-After), accepts file uploads at the URL it hands out, and serves a
Socket Mode WebSocket.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.local_http import serve_locally

BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
TEAM_ID = "T0TEAM"

Answer = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(slots=True)
class SlackCall:
    method: str
    args: dict[str, Any]
    # False for calls the fake refused (rate limit, injected error, bad token).
    ok: bool = True


@dataclass(slots=True)
class _Injected:
    rate_limits: dict[str, list[int]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def _decode(value: Any) -> Any:
    """slack_sdk sends blocks and files as JSON strings in form posts; decode them back."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class FakeSlackApi:
    def __init__(self, *, token: str = "xoxb-test", app_token: str = "xapp-test") -> None:
        self.token = token
        self.app_token = app_token
        self.calls: list[SlackCall] = []
        self.uploads: dict[str, bytes] = {}
        self._injected = _Injected()
        self._ts = itertools.count(1)
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_open = asyncio.Event()
        self._acked: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._answers: dict[str, Answer] = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._connections_open,
            "chat.postMessage": self._message,
            "chat.startStream": self._message,
            "chat.update": self._existing,
            "chat.appendStream": self._existing,
            "chat.stopStream": self._existing,
            "chat.postEphemeral": lambda args: {"message_ts": self._next_ts()},
            "files.getUploadURLExternal": self._upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "assistant.threads.setStatus": lambda args: {},
            "assistant.threads.setSuggestedPrompts": lambda args: {},
        }

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/socket", self._socket)
        self._runner, self.port = await serve_locally(app)

    async def stop(self) -> None:
        for socket in list(self._sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What SLACK_API_URL is set to."""
        return f"{self.url}/api/"

    # --- scripting and inspection --------------------------------------------------------

    def rate_limit_once(self, method: str, *, retry_after: int = 0) -> None:
        """The next call of ``method`` gets HTTP 429 with this Retry-After (seconds)."""
        self._injected.rate_limits.setdefault(method, []).append(retry_after)

    def refuse(self, method: str, *, error: str = "not_allowed") -> None:
        """Every call of ``method`` answers ok=false with ``error`` from now on."""
        self._injected.errors[method] = error

    def calls_to(self, *methods: str, ok: bool | None = True) -> list[dict[str, Any]]:
        return [c.args for c in self.calls if c.method in methods and (ok is None or c.ok == ok)]

    @property
    def methods(self) -> list[str]:
        return [c.method for c in self.calls if c.ok]

    # --- Web API -------------------------------------------------------------------------

    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            args.update(await request.json())
        elif request.can_read_body:
            args.update((await request.post()).items())
        return {k: _decode(v) for k, v in args.items()}

    def _authorized(self, method: str, request: web.Request, args: dict[str, Any]) -> bool:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header else str(args.get("token", ""))
        expected = self.app_token if method == "apps.connections.open" else self.token
        return token == expected

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await self._args(request)
        args.pop("token", None)
        limits = self._injected.rate_limits.get(method)
        if limits:
            self.calls.append(SlackCall(method, args, ok=False))
            headers = {"Retry-After": str(limits.pop(0))}
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers=headers
            )
        error = self._refusal(method, request, args)
        if error is not None:
            self.calls.append(SlackCall(method, args, ok=False))
            return web.json_response({"ok": False, "error": error})
        self.calls.append(SlackCall(method, args))
        return web.json_response({"ok": True, **self._answers[method](args)})

    def _refusal(self, method: str, request: web.Request, args: dict[str, Any]) -> str | None:
        if not self._authorized(method, request, args):
            return "invalid_auth"
        if method not in self._answers:
            return "unknown_method"
        return self._injected.errors.get(method)

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://fake.slack.com/",
            "team": "Fake",
            "user": "switchboard",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _message(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channel": args.get("channel"), "ts": self._next_ts()}

    def _existing(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channel": args.get("channel"), "ts": args.get("ts")}

    def _upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        file_id = "F" + uuid.uuid4().hex[:10].upper()
        return {"upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}

    def _complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files") or []
        return {"files": [{"id": f["id"], "title": f.get("title")} for f in files]}

    async def _upload(self, request: web.Request) -> web.Response:
        self.uploads[request.match_info["file_id"]] = await request.read()
        return web.Response(text="OK - uploaded")

    # --- Socket Mode ---------------------------------------------------------------------

    def _connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"ws://127.0.0.1:{self.port}/socket"}

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._sockets.append(socket)
        self._socket_open.set()
        await socket.send_json({"type": "hello", "num_connections": 1})
        async for message in socket:
            if message.type == WSMsgType.TEXT:
                ack = json.loads(message.data)
                future = self._acked.pop(str(ack.get("envelope_id")), None)
                if future is not None and not future.done():
                    future.set_result(ack)
        self._sockets.remove(socket)
        if not self._sockets:
            self._socket_open.clear()
        return socket

    async def connected(self) -> None:
        """Wait until a Socket Mode client is connected."""
        await self._socket_open.wait()

    async def socket_send(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Deliver one envelope (events_api, slash_commands, interactive); returns the ack."""
        await self.connected()
        envelope_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acked[envelope_id] = future
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": 0,
            "retry_reason": "",
        }
        await self._sockets[-1].send_json(envelope)
        return await future
