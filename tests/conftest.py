"""Shared fixtures: a migrated SQLite database per test and an app wired with fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.compose import App, build_app
from bot.migrate import upgrade
from bot.settings import Settings
from services.container import GenerationConfig, Services
from tests.fakes.text import FakeTextGenerator

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    # Tests never read a developer's .env.
    monkeypatch.chdir(tmp_path)
    for name in ("TELEGRAM_BOT_TOKEN", "SLACK_BOT_TOKEN", "OPENAI_API_KEY", "ZHIPUAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    upgrade(settings.db_url)
    return settings


@pytest.fixture
def fake_text() -> FakeTextGenerator:
    return FakeTextGenerator()


@pytest.fixture
async def app(migrated: Settings, fake_text: FakeTextGenerator) -> AsyncIterator[App]:
    services = Services(
        text=fake_text,
        generation=GenerationConfig(system_prompt="You are a test.", max_tokens=64, temperature=0),
    )
    built = build_app(migrated, services=services)
    yield built
    await built.close()
