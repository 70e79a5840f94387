"""Typed settings, read once from the environment and `.env` by pydantic-settings."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
# What the local providers pass to torch; "auto" is resolved by services/modelhost/device.py.
_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_MODEL_DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")


class TextProvider(StrEnum):
    LOCAL = "local"
    OPENAI = "openai"
    ZHIPUAI = "zhipuai"


class ImageProvider(StrEnum):
    LOCAL = "local"
    OPENAI = "openai"
    ZHIPUAI = "zhipuai"


class SentimentProvider(StrEnum):
    LOCAL = "local"
    REMOTE = "remote"
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
    # Connections each process may hold: the pool, plus overflow under a burst.
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=20, ge=0)
    log_level: LogLevel = "INFO"

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
    # "openai,local" is a fallback chain: the first provider answers, the next ones take over
    # while it fails (its circuit breaker open). Split into text_provider + text_fallbacks.
    text_provider: TextProvider = TextProvider.LOCAL
    text_fallbacks: Annotated[list[TextProvider], NoDecode] = Field(default_factory=list)
    text_model: str | None = None
    text_max_tokens: int = Field(default=256, ge=1)
    text_temperature: float = Field(default=0.3, ge=0.0, le=2.0)
    text_context_window: int | None = Field(default=None, ge=64)
    text_timeout: float = Field(default=60.0, gt=0)
    system_prompt: str = "You are Switchboard, a helpful and concise assistant."
    image_provider: ImageProvider = ImageProvider.LOCAL
    image_model: str | None = None
    image_size: str | None = Field(default=None, pattern=r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$")
    image_steps: int | None = Field(default=None, ge=1, le=100)
    image_max_n: int = Field(default=4, ge=1, le=10)
    image_max_side: int = Field(default=1024, ge=64, le=4096)
    image_max_prompt_chars: int = Field(default=1000, ge=10, le=32_000)
    image_timeout: float = Field(default=120.0, gt=0)
    sentiment_provider: SentimentProvider = SentimentProvider.LOCAL
    sentiment_model: str | None = None
    embedding_model: str | None = None
    model_device: str = "auto"
    model_host_url: str | None = None
    model_host_api_key: SecretStr | None = None
    # Micro-batching on the model host: the most items per batch for each kind of model, how
    # long the first request of a batch may wait for company, and how many requests may wait
    # per model before new ones are answered "busy, try again".
    text_max_batch: int = Field(default=8, ge=1, le=256)
    sentiment_max_batch: int = Field(default=64, ge=1, le=4096)
    embedding_max_batch: int = Field(default=64, ge=1, le=4096)
    image_max_batch: int = Field(default=4, ge=1, le=64)
    model_batch_wait_ms: float = Field(default=5.0, ge=0, le=1000)
    # A generation batch runs for seconds and admits no late-comer, so filling it is worth a
    # longer wait than a classifier's.
    text_batch_wait_ms: float = Field(default=25.0, ge=0, le=1000)
    model_queue_size: int = Field(default=128, ge=1, le=100_000)
    warm_models: bool = False
    model_server_host: str = "127.0.0.1"
    model_server_port: int = Field(default=8001, ge=1, le=65535)

    # Hosted providers
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    zhipuai_api_key: SecretStr | None = None
    zhipuai_base_url: str | None = None

    # Access control: comma-separated ids, bare ("12345") or with the platform
    # ("telegram:12345", "slack:U123"). Empty allowlists mean open; admins always get in.
    allowed_users: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allowed_chats: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allowed_slack_workspaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    admin_users: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Per user and UTC day; 0 means unlimited. Admins are exempt.
    quota_messages_per_day: int = Field(default=0, ge=0)
    quota_tokens_per_day: int = Field(default=0, ge=0)
    quota_images_per_day: int = Field(default=0, ge=0)
    rate_limit_per_minute: int = Field(default=0, ge=0)
    max_message_chars: int = Field(default=8000, ge=0)

    # Inbox: a pending event whose worker showed no sign of life for this long is resumed.
    inbox_resume_after: float = Field(default=60.0, gt=0)
    # Seconds SIGTERM waits for messages in flight before re-queueing them.
    shutdown_grace: float = Field(default=20.0, ge=0)

    # Knowledge base and QA (issue 6). Whether the text model can be trusted to rewrite
    # follow-up questions and write grounded answers; unset means: hosted providers (openai,
    # zhipuai) can, the local default (SmolLM2-135M) cannot, so its QA answers are quoted.
    text_model_capable: bool | None = None
    qa_top_k: int = Field(default=4, ge=1, le=20)
    # Where "Ask a person" hand-offs are POSTed as JSON (a help desk or a chat incoming
    # webhook); unset: they are only stored, for `switchboard handoffs`. Often holds a token.
    handoff_webhook_url: SecretStr | None = None
    # Bearer token a help desk sends with POST /handoffs/{id}/answer to answer a hand-off (the
    # bot sends the answer into the user's chat); unset: that endpoint is off.
    handoff_answer_token: SecretStr | None = None

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
        "model_host_api_key",
        "handoff_webhook_url",
        "handoff_answer_token",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("telegram_webhook_secret", mode="after")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # Telegram's rule for secret_token; it would refuse the webhook at start-up otherwise.
        if value is not None and not _WEBHOOK_SECRET.fullmatch(value.get_secret_value()):
            raise ValueError("use 1 to 256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @model_validator(mode="after")
    def _reply_fits(self) -> Settings:
        # Every chat would fail with "the reply budget does not fit" otherwise.
        window = self.text_context_window
        if window is not None and self.text_max_tokens >= window // 2:
            raise ValueError(
                f"TEXT_MAX_TOKENS ({self.text_max_tokens}) must be under half of "
                f"TEXT_CONTEXT_WINDOW ({window}), to leave room for the conversation"
            )
        return self

    @field_validator("model_device", mode="before")
    @classmethod
    def _known_device(cls, value: object) -> object:
        # Caught here, a typo does not fail every message at the model's first load.
        if isinstance(value, str) and _MODEL_DEVICE.fullmatch(value.strip().lower()):
            return value.strip().lower()
        raise ValueError("expected auto, cpu, cuda, cuda:N (a GPU's index) or mps")

    @model_validator(mode="before")
    @classmethod
    def _provider_chain(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        key = next((k for k in data if k.lower() == "text_provider"), None)
        value = data.get(key) if key else None
        if isinstance(value, str) and "," in value:
            names = [part.strip() for part in value.split(",") if part.strip()]
            # With none (","), _one_provider says so: an error raised here would quote every
            # setting, secrets included, as its input.
            if names:
                data = {**data, key: names[0], "text_fallbacks": names[1:]}
        return data

    @field_validator("text_provider", mode="before")
    @classmethod
    def _one_provider(cls, value: object) -> object:
        if isinstance(value, str) and "," in value:
            raise ValueError("names no provider; expected one, or a fallback chain: openai,local")
        return value

    @field_validator(
        "allowed_users",
        "allowed_chats",
        "allowed_slack_workspaces",
        "admin_users",
        "text_fallbacks",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def db_url(self) -> str:
        if self.database_url:
            return async_driver(self.database_url)
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
            self.model_host_api_key,
            self.handoff_webhook_url,
            self.handoff_answer_token,
        ]
        return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]


def async_driver(url: str) -> str:
    """A PostgreSQL URL as managed databases hand it out (``postgres://``, ``postgresql://``,
    ``?sslmode=require``), spelt for asyncpg, the driver Switchboard runs on."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgres", "postgresql"):
        return url
    parts = urlsplit(f"postgresql+asyncpg://{rest}")
    query = [("ssl" if k == "sslmode" else k, v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query)))
