"""`switchboard` start-up: what an unusable DATABASE_URL tells the user."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql://bot:pa55word@127.0.0.1:abc/db", "it is malformed; check that the port"),
        ("postgresql://bot:pa55word@[::1/db", "it is malformed; check that the port"),
        ("mysql://bot:pa55word@db/sb", "its driver (MySQLdb) is not installed; use postgresql://"),
        ("pa55word", "it does not parse; use postgresql://"),
        ("nosuch://bot:pa55word@db/sb", "SQLAlchemy knows no such database; use postgresql://"),
        ("sqlite:///pa55word.db", "its driver is not an asyncio one; use postgresql://"),
    ],
)
@pytest.mark.parametrize("command", [["db", "upgrade"], ["chat"]])
def test_an_unusable_database_url_is_one_line_without_the_url(
    url: str,
    reason: str,
    command: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(command) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"switchboard: DATABASE_URL is not a usable database URL: {reason}")
    assert "pa55" not in line


@pytest.mark.parametrize(("command", "quiet"), [(["chat"], True), (["models", "warm"], False)])
def test_model_loading_bars_are_off_except_for_the_models_commands(
    command: list[str], quiet: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "pa55word")  # fails fast, after the choice is made
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "")  # restored after the test
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS")
    monkeypatch.setattr("bot.model_services.warm_models", _no_models)
    main(command)
    assert os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") == ("1" if quiet else None)


async def _no_models(settings: object) -> int:
    return 0
