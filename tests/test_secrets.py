"""No secret in any log: the real `switchboard` process, at DEBUG, with known fake credentials,
driven through every path these tests can reach (Telegram webhook and polling, Slack HTTP mode,
a remote model host, `serve-models`), answers that succeed and answers that fail (provider
outage, 429s, a refused Slack call, bad signatures and secrets), then its stdout and stderr are
searched for every credential, whole, URL-encoded or in part."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import socket
import sys
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, quote_plus, urlencode

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from pydantic import model_validator

from bot import cli
from bot.http import HttpServer, build_http_app
from bot.logs import configure_logging
from bot.settings import Settings
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_server import BOT_USER_ID, FakeSlackApi
from tests.fakes.telegram_server import FakeTelegramServer, message_update
from tests.platforms.slack_harness import command_payload, event_callback, sign

ROOT = Path(__file__).resolve().parent.parent
# Shaped like the real thing, so that shape-based redaction is tested as well as the list.
SECRETS = {
    "TELEGRAM_BOT_TOKEN": "7312954860:AAH9f3kLeakCheckTelegramTokenValue_x1Z",
    "TELEGRAM_WEBHOOK_SECRET": "tgwhLeakCheckWebhookSecret_2a9Q",
    "SLACK_BOT_TOKEN": "xoxb-4411-7732-LeakCheckSlackBotToken3b",
    "SLACK_SIGNING_SECRET": "8f2c0d4LeakCheckSlackSigningSecret4c",
    "OPENAI_API_KEY": "sk-proj-LeakCheckOpenAIKey5dVb7Tq",
    "ZHIPUAI_API_KEY": "6e1f0c2aLeakCheckZhipuKey.Xw8yPq3z",
    "MODEL_HOST_API_KEY": "mhk-LeakCheckModelHostKey7fRt2",
}
TIMEOUT = 30.0


def _needles() -> dict[str, str]:
    """Every form in which a secret could show: whole, URL-encoded, and the distinctive part
    of each (the Telegram token after its bot id, a key after its vendor prefix)."""
    found: dict[str, str] = {}
    for name, value in SECRETS.items():
        for form in (value, quote(value, safe=""), quote_plus(value), value.split(":")[-1]):
            found[form] = name
        found[value.split("-")[-1]] = name
    return {needle: name for needle, name in found.items() if len(needle) >= 12}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(condition: Callable[[], bool], *, what: str, within: float = TIMEOUT) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class FakeModelHost:
    """Our model server's /classify and /v1/embeddings, checking the bearer key; ``fail``
    answers every call with that HTTP status."""

    fail: int | None = None
    seen_keys: list[str] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/classify", self._classify)
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _refusal(self, request: web.Request) -> web.Response | None:
        self.seen_keys.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization") != f"Bearer {SECRETS['MODEL_HOST_API_KEY']}":
            return web.json_response(
                {"error": {"message": "wrong key", "type": "auth"}}, status=401
            )
        if self.fail is not None:
            return web.json_response({"error": {"message": "down", "type": "x"}}, status=self.fail)
        return None

    async def _classify(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        texts = (await request.json())["input"]
        data = [{"index": i, "label": "positive", "score": 0.9} for i in range(len(texts))]
        return web.json_response({"object": "list", "data": data})

    async def _embeddings(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        body = await request.json()
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        data = []
        for i, text in enumerate(texts):
            row = np.random.default_rng(zlib.crc32(text.encode())).normal(size=16)
            row = (row / np.linalg.norm(row)).astype("<f4")
            value: Any = (
                base64.b64encode(row.tobytes()).decode()
                if body.get("encoding_format") == "base64"
                else row.tolist()
            )
            data.append({"object": "embedding", "index": i, "embedding": value})
        usage = {"prompt_tokens": 1, "total_tokens": 1}
        return web.json_response({"object": "list", "data": data, "model": "m", "usage": usage})


class BrokenPollServer(FakeTelegramServer):
    """Answers the next getUpdates calls with a 502, as Telegram does during an outage."""

    outages = 0

    async def _getUpdates(self, call: Any) -> Any:
        if self.outages:
            self.outages -= 1
            raise _Outage
        return await super()._getUpdates(call)

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            return await super()._handle(request)
        except _Outage:
            body = {"ok": False, "error_code": 502, "description": "Bad Gateway"}
            return web.json_response(body, status=502)


class _Outage(Exception):
    pass


class Service:
    """A `switchboard` subprocess whose stdout and stderr go to files, to be searched."""

    # Every one started, so that a failing test leaves none running (see ``reaper``).
    started: ClassVar[list[Service]] = []

    def __init__(self, tmp: Path, name: str, env: dict[str, str], *args: str) -> None:
        self.out = tmp / f"{name}.out"
        self.err = tmp / f"{name}.err"
        self._env = env
        self._args = args
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "--log-level", "DEBUG", *self._args,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err, env=self._env,
                cwd=self.out.parent,
            )  # fmt: skip
        Service.started.append(self)

    async def stop(self) -> int:
        """SIGTERM, as an orchestrator stops it; returns the exit code."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), TIMEOUT)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def logs(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")


def _env(tmp: Path, **settings: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "SLACK_"))}
    return {
        **keep,
        **SECRETS,
        "DATA_DIR": str(tmp / "data"),
        "DATABASE_URL": "",
        "LOG_LEVEL": "DEBUG",
        "SHUTDOWN_GRACE": "5",
        "TEXT_TIMEOUT": "5",
        **settings,
    }


@pytest.fixture(autouse=True)
def reaper() -> Iterator[None]:
    yield
    for service in Service.started:
        if service.alive():
            assert service.process is not None
            service.process.kill()
    Service.started.clear()


@pytest.fixture
async def fakes() -> AsyncIterator[dict[str, Any]]:
    telegram = BrokenPollServer()
    slack = FakeSlackApi(token=SECRETS["SLACK_BOT_TOKEN"])
    openai = FakeOpenAIServer(reply="All **good** here.")
    models = FakeModelHost()
    for fake in (telegram, slack, openai, models):
        await fake.start()  # type: ignore[attr-defined]
    yield {"telegram": telegram, "slack": slack, "openai": openai, "models": models}
    for fake in (telegram, slack, openai, models):
        await fake.stop()  # type: ignore[attr-defined]


def _answers(telegram: FakeTelegramServer, chat_id: int) -> list[str]:
    return [
        str(c.params.get("text")) for c in telegram.calls_to("sendMessage") if c.chat_id == chat_id
    ]


async def _webhook_and_slack(tmp: Path, fakes: dict[str, Any]) -> Service:
    telegram: FakeTelegramServer = fakes["telegram"]
    slack: FakeSlackApi = fakes["slack"]
    openai: FakeOpenAIServer = fakes["openai"]
    models: FakeModelHost = fakes["models"]
    port = _free_port()
    service = Service(
        tmp,
        "webhook",
        _env(
            tmp,
            HTTP_PORT=str(port),
            TELEGRAM_API_URL=telegram.base_url,
            TELEGRAM_WEBHOOK_URL="https://bot.example.test/telegram/webhook",
            SLACK_API_URL=slack.base_url,
            TEXT_PROVIDER="openai,zhipuai",
            OPENAI_BASE_URL=openai.openai_base_url,
            ZHIPUAI_BASE_URL=openai.zhipuai_base_url,
            MODEL_HOST_URL=models.url,
        ),
        "run",
    )
    await service.start()
    await until(lambda: bool(telegram.calls_to("setWebhook")) or not service.alive(), what="start")
    assert service.alive(), service.logs()
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        await _drive_telegram_webhook(http, base, telegram, openai)
        await _drive_slack(http, base, slack, openai, models)
    return service


async def _drive_telegram_webhook(
    http: aiohttp.ClientSession,
    base: str,
    telegram: FakeTelegramServer,
    openai: FakeOpenAIServer,
) -> None:
    url = f"{base}/telegram/webhook"
    good = {"X-Telegram-Bot-Api-Secret-Token": SECRETS["TELEGRAM_WEBHOOK_SECRET"]}
    ids = iter(range(9000, 10_000))

    async def post(text: str, *, chat_id: int, headers: dict[str, str] = good) -> int:
        update = {"update_id": next(ids), **message_update(text, chat_id=chat_id)}
        async with http.post(url, json=update, headers=headers) as response:
            return response.status

    assert await post("hello", chat_id=101) == 200
    await until(lambda: len(_answers(telegram, 101)) >= 1, what="a Telegram answer")
    # A wrong secret, no secret, a body that is no update.
    assert await post("intruder", chat_id=102, headers={}) == 401
    wrong = {"X-Telegram-Bot-Api-Secret-Token": SECRETS["TELEGRAM_WEBHOOK_SECRET"][:-1] + "!"}
    assert await post("intruder", chat_id=102, headers=wrong) == 401
    async with http.post(url, data=b"{not json", headers=good) as response:
        assert response.status == 400
    # Telegram refuses the HTML, then rate-limits the next message.
    telegram.reject_entities = True
    assert await post("/help", chat_id=103) == 200
    await until(lambda: len(_answers(telegram, 103)) >= 2, what="the plain-text resend")
    telegram.reject_entities = False
    telegram.rate_limit_next("sendMessage", retry_after=1)
    assert await post("/start", chat_id=104) == 200
    await until(lambda: len(_answers(telegram, 104)) >= 2, what="the answer after a 429")
    # Both text providers down (the fallback too), then rate-limited: the user gets a notice.
    for status, chat_id in ((500, 105), (429, 106)):
        openai.fail_status = status
        assert await post("are you there?", chat_id=chat_id) == 200
        await _answered(telegram, chat_id)
    openai.fail_status = None


async def _answered(telegram: FakeTelegramServer, chat_id: int) -> None:
    await until(lambda: len(_answers(telegram, chat_id)) >= 1, what=f"an answer in {chat_id}")


async def _drive_slack(
    http: aiohttp.ClientSession,
    base: str,
    slack: FakeSlackApi,
    openai: FakeOpenAIServer,
    models: FakeModelHost,
) -> None:
    url = f"{base}/slack/events"
    secret = SECRETS["SLACK_SIGNING_SECRET"]

    async def post(body: bytes, content_type: str, *, key: str = secret) -> int:
        ts = int(time.time())
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": sign(body, timestamp=ts, secret=key),
        }
        async with http.post(url, data=body, headers=headers) as response:
            return response.status

    def mention(text: str, ts: str) -> bytes:
        event = {"type": "app_mention", "user": "U0ADA", "channel": "C0CHAN", "ts": ts}
        event["text"] = f"<@{BOT_USER_ID}> {text}"
        return json.dumps(event_callback(event, event_id=f"Ev{ts}")).encode()

    def replies() -> int:
        return len(slack.calls_to("chat.postMessage", "chat.startStream", "chat.postEphemeral"))

    assert await post(mention("hello", "500.1"), "application/json") == 200
    await until(lambda: replies() >= 1, what="a Slack answer")
    assert await post(mention("intruder", "500.2"), "application/json", key="wrong") == 401
    form = urlencode(command_payload("/help")).encode()
    slack.rate_limit_once("chat.postMessage", retry_after=0)
    slack.rate_limit_once("chat.postEphemeral", retry_after=0)
    assert await post(form, "application/x-www-form-urlencoded") == 200
    await until(lambda: replies() >= 2, what="the /help answer after a 429")
    # Slack refuses the answer; the model host refuses the sentiment and embedding calls.
    slack.refuse("chat.startStream", error="not_in_channel")
    slack.refuse("chat.postMessage", error="not_in_channel")
    models.fail = 500
    openai.fail_status = 503
    assert await post(mention("and now?", "500.3"), "application/json") == 200
    await until(
        lambda: bool(slack.calls_to("chat.postMessage", ok=False)), what="the refused apology"
    )
    await asyncio.sleep(0.5)  # its failure is logged after the refusal
    openai.fail_status = None


async def _polling(tmp: Path, fakes: dict[str, Any]) -> Service:
    telegram: BrokenPollServer = fakes["telegram"]
    openai: FakeOpenAIServer = fakes["openai"]
    service = Service(
        tmp,
        "polling",
        _env(
            tmp,
            HTTP_PORT=str(_free_port()),
            TELEGRAM_API_URL=telegram.base_url,
            TEXT_PROVIDER="openai",
            OPENAI_BASE_URL=openai.openai_base_url,
            SENTIMENT_PROVIDER="openai",
            MODEL_HOST_URL=fakes["models"].url,
        ),
        "run",
    )
    calls = len(telegram.calls_to("getUpdates"))
    telegram.outages = 1
    await service.start()
    # The outage is retried after a second of backoff, and polling goes on.
    await until(
        lambda: len(telegram.calls_to("getUpdates")) > calls + 1 or not service.alive(),
        what="polling to survive an outage",
    )
    assert service.alive(), service.logs()
    telegram.push_update(message_update("hello by polling", chat_id=201))
    await until(lambda: len(_answers(telegram, 201)) >= 1, what="a polled answer")
    return service


async def _model_server(tmp: Path) -> Service:
    port = _free_port()
    service = Service(tmp, "models", _env(tmp), "serve-models", "--lazy", "--port", str(port))
    await service.start()
    url = f"http://127.0.0.1:{port}/v1/models"
    async with aiohttp.ClientSession() as http:
        await until(lambda: (tmp / "models.err").stat().st_size > 0, what="serve-models")
        for key, status in (("wrong", 401), (SECRETS["MODEL_HOST_API_KEY"], 200)):
            for _ in range(100):
                try:
                    async with http.get(url, headers={"Authorization": f"Bearer {key}"}) as r:
                        assert r.status == status
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
    return service


async def _bad_api_url(tmp: Path) -> Service:
    """A Bot API URL aiohttp refuses: the error names the whole URL, token and all."""
    env = _env(tmp, HTTP_PORT=str(_free_port()), TELEGRAM_API_URL="http://127.0.0.1:99999")
    for name in ("SLACK_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET"):
        env.pop(name)
    service = Service(tmp, "bad-url", env, "run")
    await service.start()
    await until(lambda: not service.alive(), what="the misconfigured bot to stop")
    return service


async def test_no_credential_reaches_any_log(tmp_path: Path, fakes: dict[str, Any]) -> None:
    services = [
        await _webhook_and_slack(tmp_path, fakes),
        await _polling(tmp_path, fakes),
        await _model_server(tmp_path),
        await _bad_api_url(tmp_path),
    ]
    codes = [await service.stop() for service in services]
    logs = {service.err.stem: service.logs() for service in services}
    # uvicorn re-raises the SIGTERM it caught once serve-models has shut down cleanly; the
    # bot that cannot reach Telegram stops with an error.
    assert codes[:2] == [0, 0] and codes[2] in (0, -signal.SIGTERM) and codes[3] == 1, logs
    # So the search below would have found the token, had it not been redacted.
    assert "/bot[redacted]/getMe" in logs["bad-url"]
    # The paths ran, at DEBUG, with the credentials in use.
    assert all(" DEBUG " in text for text in logs.values()), logs
    assert fakes["telegram"].calls[0].token == SECRETS["TELEGRAM_BOT_TOKEN"]
    assert f"Bearer {SECRETS['MODEL_HOST_API_KEY']}" in fakes["models"].seen_keys
    leaks = [
        f"{name} ({needle!r}) in the {where} log: ...{text[max(0, i - 80) : i + 80]}..."
        for where, text in logs.items()
        for needle, name in _needles().items()
        if (i := text.find(needle)) >= 0
    ]
    assert not leaks, "\n".join(leaks)


@pytest.fixture
def fresh_logging() -> Iterator[None]:
    """Logging as a new process has it (tests before may have let uvicorn configure its
    loggers), and as it was afterwards."""
    names = ("", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = [(n, logging.getLogger(n).handlers[:], logging.getLogger(n).propagate) for n in names]
    for name in names[1:]:
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    yield
    for name, handlers, propagate in saved:
        logging.getLogger(name).handlers = handlers
        logging.getLogger(name).propagate = propagate


@pytest.mark.usefixtures("fresh_logging")
def test_the_http_servers_log_through_the_redaction(capsys: pytest.CaptureFixture[str]) -> None:
    secret = SECRETS["SLACK_SIGNING_SECRET"]
    configure_logging("INFO", [secret])
    HttpServer(build_http_app(), host="127.0.0.1", port=0)  # uvicorn sets up its logging here
    logging.getLogger("uvicorn.error").error("Exception in ASGI application: %s", secret)
    err = capsys.readouterr().err
    assert "Exception in ASGI application" in err and secret not in err


class CrossCheckedSettings(Settings):
    """A check over several settings: pydantic's error for it quotes all of them."""

    @model_validator(mode="before")
    @classmethod
    def _refuse(cls, data: object) -> object:
        raise ValueError("these settings do not go together")


@pytest.mark.parametrize(
    ("settings", "bad", "says"),
    [
        # e.g. a templated "${PRIMARY},${FALLBACK}" with both unset
        (Settings, {"TEXT_PROVIDER": ","}, "TEXT_PROVIDER: names no provider"),
        (CrossCheckedSettings, {}, "settings: these settings do not go together"),
    ],
)
def test_a_bad_setting_is_reported_without_any_secret(
    settings: type[Settings],
    bad: dict[str, str],
    says: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in {**SECRETS, **bad}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cli, "Settings", settings)
    assert cli.main(["db", "upgrade"]) == 2
    out = "".join(capsys.readouterr())
    assert out.startswith(f"switchboard: bad configuration: {says}"), out
    pieces = {value[i : i + 12] for value in SECRETS.values() for i in range(len(value) - 11)}
    assert [piece for piece in pieces if piece in out] == [], out
