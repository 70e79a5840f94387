"""Settings come from the environment; secrets never reach a log line."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.cli import main
from bot.compose import ConfigurationError, build_app
from bot.logs import REDACTED, RedactSecrets, configure_logging, log_to_file
from bot.runner import run_platforms
from bot.settings import Settings, TextProvider

ROOT = Path(__file__).resolve().parent.parent


def test_env_example_documents_every_setting() -> None:
    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M)
    )
    fields = {(f.alias or name).upper() for name, f in Settings.model_fields.items()}
    assert fields <= documented, fields - documented


def test_environment_and_blank_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXT_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-abc")
    monkeypatch.setenv("TEXT_CONTEXT_WINDOW", "")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.text_provider is TextProvider.OPENAI
    assert settings.text_context_window is None
    assert settings.openai_api_key is not None
    assert "sk-abc" not in repr(settings)
    assert settings.secrets() == ["sk-abc"]


def test_secrets_are_redacted_from_messages_arguments_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = "123456789:AAH-fake-telegram-token-abcdefghijklmnop"
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "url %s key %s", None, None)
    record.args = (f"https://api.telegram.org/bot{token}/getMe", "sk-secret-value")
    try:
        raise RuntimeError("failed with sk-secret-value")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    RedactSecrets(["sk-secret-value"]).filter(record)
    assert token not in record.getMessage() and "sk-secret-value" not in record.getMessage()
    assert REDACTED in record.getMessage()
    assert record.exc_text is not None and "sk-secret-value" not in record.exc_text


def test_configure_logging_installs_the_filter(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", ["hunter2-secret"])
    logging.getLogger("switchboard.test").warning("token is hunter2-secret")
    assert "hunter2-secret" not in capsys.readouterr().err


def test_an_interactive_console_logs_to_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", ["hunter2-secret"])
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        log_to_file(tmp_path / "logs" / "console.log")
        log = logging.getLogger("switchboard.test")
        log.info("loaded a model with hunter2-secret")
        log.warning("something to see")
        err = capsys.readouterr().err
        assert "loaded a model" not in err and "something to see" in err
        written = (tmp_path / "logs" / "console.log").read_text()
        assert "loaded a model with [redacted]" in written and "hunter2-secret" not in written
    finally:
        for handler in set(root.handlers) - set(before):
            root.removeHandler(handler)
            handler.close()
        configure_logging("INFO", [])


def test_cli_help_and_bad_configuration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "chat" in capsys.readouterr().out
    monkeypatch.setenv("TEXT_PROVIDER", "nonsense")
    assert main(["db", "upgrade"]) == 2
    assert "TEXT_PROVIDER" in capsys.readouterr().err.upper()


@pytest.mark.parametrize(
    ("given", "device"),
    [("auto", "auto"), ("cpu", "cpu"), ("CUDA", "cuda"), ("cuda:1", "cuda:1"), ("mps", "mps")],
)
def test_model_device_takes_what_torch_takes(given: str, device: str) -> None:
    settings = Settings(model_device=given, _env_file=None)  # type: ignore[call-arg]
    assert settings.model_device == device


@pytest.mark.parametrize(
    ("name", "value"),
    [("MODEL_DEVICE", "gpu"), ("MODEL_DEVICE", "cuda:"), ("LOG_LEVEL", "verbose")],
)
def test_a_bad_device_or_log_level_is_a_bad_setting(
    name: str,
    value: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"switchboard: bad configuration: {name}: "), err
    assert "Traceback" not in err


def test_log_level_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "debug")
    assert Settings(_env_file=None).log_level == "DEBUG"  # type: ignore[call-arg]
    with pytest.raises(SystemExit) as exit_info:
        main(["--log-level", "verbose", "db", "upgrade"])
    assert exit_info.value.code == 2


async def test_a_cuda_device_torch_cannot_see_stops_start_up(migrated: Settings) -> None:
    import torch

    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last, on any machine
    settings = migrated.model_copy(update={"model_device": missing})
    with pytest.raises(ConfigurationError, match=f"^MODEL_DEVICE={missing}, but torch"):
        await run_platforms(settings, [])


def test_database_trouble_is_one_line_without_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    assert main(["db", "upgrade", "nonsense"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "switchboard: database migration: Can't locate revision identified by 'nonsense'"
    ]
    # Port 1 on the loopback: nothing listens, so the connection is refused at once.
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://bot:pa55word@127.0.0.1:1/bot")
    assert main(["kb", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("switchboard: cannot reach the database (") and "Traceback" not in err
    assert "pa55word" not in err and "DATABASE_URL" in err


@pytest.mark.parametrize(
    ("given", "used"),
    [
        (
            "postgres://u:p@db:5432/sb?sslmode=require",
            "postgresql+asyncpg://u:p@db:5432/sb?ssl=require",
        ),
        ("postgresql://u:p%40ss@db/sb", "postgresql+asyncpg://u:p%40ss@db/sb"),
        ("postgresql+asyncpg://u@db/sb", "postgresql+asyncpg://u@db/sb"),
        ("sqlite+aiosqlite:////srv/sb.db", "sqlite+aiosqlite:////srv/sb.db"),
    ],
)
def test_a_managed_databases_url_is_spelt_for_asyncpg(given: str, used: str) -> None:
    assert Settings(database_url=given, _env_file=None).db_url == used  # type: ignore[call-arg]


async def test_the_connection_pool_is_sized_by_the_settings(migrated: Settings) -> None:
    app = build_app(migrated.model_copy(update={"db_pool_size": 3, "db_max_overflow": 1}))
    try:
        pool = app.engine.pool
        assert (pool.size(), pool._max_overflow) == (3, 1)  # type: ignore[attr-defined]
    finally:
        await app.close()


def test_a_reply_budget_that_leaves_no_room_for_the_chat_is_a_bad_setting() -> None:
    with pytest.raises(ValidationError, match=r"TEXT_MAX_TOKENS \(256\) must be under half"):
        Settings(_env_file=None, text_context_window=64, text_max_tokens=256)  # type: ignore[call-arg]
    assert Settings(_env_file=None, text_context_window=2048).text_max_tokens == 256  # type: ignore[call-arg]
