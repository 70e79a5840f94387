"""A conversation survives a restart: two processes on one database file."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    fake = FakeOpenAIServer(reply="Nice to meet you, Ada.")
    await fake.start()
    yield fake
    await fake.stop()


async def chat_process(lines: str, *, data_dir: Path, base_url: str) -> str:
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": "",
        "TEXT_PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-restart-test",
        "OPENAI_BASE_URL": base_url,
        "TELEGRAM_BOT_TOKEN": "",
        "SLACK_BOT_TOKEN": "",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "chat",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=data_dir.parent,
    )
    out, err = await asyncio.wait_for(process.communicate(lines.encode()), timeout=120)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_second_process_sends_the_first_ones_turns(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    data_dir = tmp_path / "data"
    first = await chat_process(
        "My name is Ada.\n", data_dir=data_dir, base_url=server.openai_base_url
    )
    assert "Nice to meet you, Ada." in first
    second = await chat_process(
        "What is my name?\n", data_dir=data_dir, base_url=server.openai_base_url
    )
    assert "Nice to meet you, Ada." in second
    sent = [(m["role"], m["content"]) for m in server.requests[-1].messages]
    assert sent[1:] == [
        ("user", "My name is Ada."),
        ("assistant", "Nice to meet you, Ada."),
        ("user", "What is my name?"),
    ]
