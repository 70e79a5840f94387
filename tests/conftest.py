"""Shared fixtures: a migrated SQLite database per test and an app wired with fakes."""

from __future__ import annotations

import os
import uuid
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


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database on each backend. PostgreSQL comes from TEST_DATABASE_URL
    (.ci/run starts a throwaway cluster); in CI a missing server is a failure, not a skip."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        return
    admin_url = os.environ.get("TEST_DATABASE_URL")
    if not admin_url:
        if os.environ.get("CI"):
            pytest.fail("TEST_DATABASE_URL is not set in CI: the PostgreSQL tests cannot run")
        pytest.skip("no PostgreSQL server (set TEST_DATABASE_URL to run these)")
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    name = f"switchboard_test_{uuid.uuid4().hex[:12]}"
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# In CI the property-based tests draw the same examples every run (a fixed seed), so a green
# run stays green; locally they explore new examples each time.
if os.environ.get("CI"):
    from hypothesis import settings as hypothesis_settings

    hypothesis_settings.register_profile("ci", derandomize=True, database=None)
    hypothesis_settings.load_profile("ci")
