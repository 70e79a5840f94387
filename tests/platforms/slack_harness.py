"""Serves a SlackPlatform's real endpoint with uvicorn on 127.0.0.1 and sends it requests
signed the way Slack signs them. Used by the Slack tests and by bench/slack_ack.py."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import uvicorn

from bot.http import build_http_app
from bot.platforms.slack import EVENTS_PATH, SlackPlatform
from handlers.types import Dispatch
from tests.fakes.slack_server import TEAM_ID

SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test"
APP_TOKEN = "xapp-test"


def sign(body: bytes, *, timestamp: int, secret: str = SIGNING_SECRET) -> str:
    """Slack's v0 request signature."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Sent:
    status: int
    body: str


class SlackHarness:
    def __init__(self, platform: SlackPlatform) -> None:
        self.platform = platform
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._running: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self, dispatch: Dispatch) -> None:
        self._running = asyncio.create_task(self.platform.start(dispatch))
        app = build_http_app(self.platform.routes())
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._serving = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._serving.done():
                self._serving.result()
            await asyncio.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}{EVENTS_PATH}"
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self.platform.stop()
        await self.platform.drain()
        if self._running is not None:
            await self._running
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            await self._serving

    async def post(
        self,
        body: bytes,
        *,
        content_type: str,
        headers: dict[str, str] | None = None,
        timestamp: int | None = None,
        secret: str = SIGNING_SECRET,
    ) -> Sent:
        assert self._session is not None
        ts = int(time.time()) if timestamp is None else timestamp
        signed = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": sign(body, timestamp=ts, secret=secret),
            **(headers or {}),
        }
        async with self._session.post(self.url, data=body, headers=signed) as response:
            return Sent(response.status, await response.text())

    async def event(
        self, event: dict[str, Any], *, event_id: str, retry: int | None = None, **kw: Any
    ) -> Sent:
        """One Events API callback, optionally as Slack's retry number ``retry``."""
        body = json.dumps(event_callback(event, event_id=event_id)).encode()
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        return await self.post(
            body, content_type="application/json", headers=headers if retry else None, **kw
        )

    async def command(self, command: str, text: str = "", **fields: str) -> Sent:
        form = command_payload(command, text, **fields)
        return await self.post(
            urlencode(form).encode(), content_type="application/x-www-form-urlencoded"
        )

    async def press(self, value: str, *, channel: str, message: dict[str, Any]) -> Sent:
        """A click on one of the bot's buttons under ``message``."""
        payload = block_actions(value, channel=channel, message=message)
        form = urlencode({"payload": json.dumps(payload)}).encode()
        return await self.post(form, content_type="application/x-www-form-urlencoded")


def event_callback(event: dict[str, Any], *, event_id: str) -> dict[str, Any]:
    return {
        "token": "legacy",
        "team_id": TEAM_ID,
        "api_app_id": "A0APP",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "event": event,
        "authorizations": [{"team_id": TEAM_ID, "user_id": "U0BOT", "is_bot": True}],
    }


def command_payload(command: str, text: str = "", **fields: str) -> dict[str, str]:
    return {
        "token": "legacy",
        "team_id": TEAM_ID,
        "channel_id": "C0CHAN",
        "channel_name": "general",
        "user_id": "U0ADA",
        "user_name": "ada",
        "command": command,
        "text": text,
        "api_app_id": "A0APP",
        "response_url": "https://hooks.slack.invalid/commands/1",
        "trigger_id": uuid.uuid4().hex,
        **fields,
    }


def block_actions(value: str, *, channel: str, message: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": TEAM_ID},
        "user": {"id": "U0ADA", "username": "ada", "team_id": TEAM_ID},
        "api_app_id": "A0APP",
        "trigger_id": uuid.uuid4().hex,
        "channel": {"id": channel},
        "container": {"type": "message", "channel_id": channel, "message_ts": message["ts"]},
        "message": message,
        "actions": [
            {
                "type": "button",
                "action_id": "switchboard:0",
                "block_id": "b",
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
