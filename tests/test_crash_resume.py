"""Nothing lost: a process killed mid-generation has its message answered after a restart,
and one that kills every worker is given up with a word to the user."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bot.compose import App
from handlers.resume import GAVE_UP, MAX_ATTEMPTS, resume_abandoned
from handlers.types import Incoming
from storage import repositories as repo
from storage.db import unit_of_work
from storage.models import InboxEvent, utcnow
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.responder import CollectingResponder


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    fake = FakeOpenAIServer(reply="Answered after the restart.", delay=60)
    await fake.start()
    yield fake
    await fake.stop()


def _env(data_dir: Path, base_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": "",
        "TEXT_PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-crash-test",
        "OPENAI_BASE_URL": base_url,
        "TEXT_TIMEOUT": "120",
        "INBOX_RESUME_AFTER": "1",
    }


async def _start(data_dir: Path, base_url: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "chat",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(data_dir, base_url),
        cwd=data_dir.parent,
    )


async def test_sigkill_mid_generation_is_answered_once_after_restart(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    data_dir = tmp_path / "data"
    first = await _start(data_dir, server.openai_base_url)
    assert first.stdin is not None
    first.stdin.write(b"Please answer this one.\n")
    await first.stdin.drain()
    await asyncio.wait_for(server.received.wait(), 60)  # the model call is in flight
    first.send_signal(signal.SIGKILL)
    await first.wait()

    server.release()
    await asyncio.sleep(1.2)  # past INBOX_RESUME_AFTER: the dead worker's heartbeat is stale
    second = await _start(data_dir, server.openai_base_url)
    out, err = await asyncio.wait_for(second.communicate(b""), timeout=120)
    assert second.returncode == 0, err.decode()
    assert out.decode().count("Answered after the restart.") == 1

    with sqlite3.connect(data_dir / "switchboard.db") as db:
        rows = db.execute("SELECT role, text FROM messages ORDER BY id").fetchall()
        inbox = db.execute("SELECT status, attempts FROM inbox").fetchall()
    assert rows == [
        ("user", "Please answer this one."),
        ("assistant", "Answered after the restart."),
    ]
    assert inbox == [("done", 2)]
    # The resumed request carried the message once, not twice.
    sent = [m["content"] for m in server.requests[-1].messages if m["role"] == "user"]
    assert sent == ["Please answer this one."]


async def test_an_event_that_keeps_killing_its_worker_is_given_up_with_a_word(app: App) -> None:
    message = Incoming("test", "poison", "c1", "u1", "this one crashes every worker")
    async with unit_of_work(app.sessions) as session:
        await repo.record_event(
            session, platform="test", event_id="poison", payload=message.to_payload()
        )
        await session.execute(
            update(InboxEvent).values(attempts=MAX_ATTEMPTS, updated_at=utcnow() - timedelta(1))
        )
    told = CollectingResponder()
    resumed = await resume_abandoned(
        app.sessions, app.dispatcher, platform="test", responder_for=lambda _: told, idle_for=1
    )
    assert resumed == 0
    assert told.texts == [GAVE_UP.format(quote="this one crashes every worker")]
    async with unit_of_work(app.sessions) as session:
        assert (await session.scalar(select(InboxEvent.status))) == "failed"
