"""Typed settings, read once from the environment and `.env` by pydantic-settings."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class TextProvider(StrEnum):
    LOCAL = "local"
    OPENAI = "openai"
    ZHIPUAI = "zhipuai"


class Settings(BaseSettings):
    """Every setting of the service. `.env.example` documents each one."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        env_ignore_empty=True,
        populate_by_name=True,
    )

    data_dir: Path = Path("var")
    # Converted offline models; defaults to DATA_DIR/models. Images bake it in elsewhere.
    models_path: Path | None = Field(default=None, alias="MODELS_DIR")
    database_url: str = ""
    log_level: str = "INFO"

    # Telegram
    telegram_bot_token: SecretStr | None = None
    telegram_api_url: str | None = None
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: SecretStr | None = None

    # Slack
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str | None = None
    # Slash commands are /<prefix><service>: "" gives /gen, /image, …; "sb-" gives /sb-gen.
    slack_command_prefix: str = Field(default="", pattern=r"^[a-z0-9_-]{0,16}$")

    # Models
    text_provider: TextProvider = TextProvider.LOCAL
    text_model: str | None = None
    text_max_tokens: int = Field(default=256, ge=1)
    text_temperature: float = Field(default=0.3, ge=0.0, le=2.0)
    text_context_window: int | None = Field(default=None, ge=64)
    text_timeout: float = Field(default=60.0, gt=0)
    system_prompt: str = "You are Switchboard, a helpful and concise assistant."
    image_provider: str = "local"
    image_model: str | None = None
    sentiment_model: str | None = None
    embedding_model: str | None = None
    model_device: str = "auto"
    model_host_url: str | None = None

    # Hosted providers
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    zhipuai_api_key: SecretStr | None = None
    zhipuai_base_url: str | None = None

    # Inbox: a pending event whose worker showed no sign of life for this long is resumed.
    inbox_resume_after: float = Field(default=60.0, gt=0)
    # Seconds SIGTERM waits for messages in flight before re-queueing them.
    shutdown_grace: float = Field(default=20.0, ge=0)

    # HTTP app
    http_host: str = "127.0.0.1"
    http_port: int = 8080

    @field_validator(
        "telegram_bot_token",
        "telegram_webhook_secret",
        "slack_bot_token",
        "slack_signing_secret",
        "slack_app_token",
        "openai_api_key",
        "zhipuai_api_key",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'switchboard.db'}"

    @property
    def models_dir(self) -> Path:
        return self.models_path or self.data_dir / "models"

    def secrets(self) -> list[str]:
        """Every configured secret value, for log redaction."""
        values = [
            self.telegram_bot_token,
            self.telegram_webhook_secret,
            self.slack_bot_token,
            self.slack_signing_secret,
            self.slack_app_token,
            self.openai_api_key,
            self.zhipuai_api_key,
        ]
        return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
