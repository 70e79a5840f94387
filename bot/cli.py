"""The `switchboard` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import get_args

from pydantic import ValidationError

from bot import handoff_cli, kb_cli, shop_cli
from bot.argtypes import whole_number
from bot.settings import LogLevel, Settings

log = logging.getLogger("switchboard")

NO_PLATFORM_HINT = (
    "No Telegram or Slack credentials configured: starting the console chat. "
    "Set TELEGRAM_BOT_TOKEN or SLACK_BOT_TOKEN in .env to connect a platform (see README)."
)

PORT = whole_number("a port", 1, 65535)  # as MODEL_SERVER_PORT is checked
DATABASE_URL_HINT = "use postgresql://user:password@host:5432/name or sqlite+aiosqlite:///path.db"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard",
        description="Self-hosted chat-bot service: Telegram, Slack and a terminal connected "
        "to text, image, sentiment, QA and recommendation services.",
        epilog="Settings come from the environment or .env; see .env.example.",
    )
    parser.add_argument(
        "--log-level", type=str.upper, choices=get_args(LogLevel), help="override LOG_LEVEL"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    commands.add_parser(
        "run",
        help="start every configured platform (the console chat when none is)",
        description="Upgrades the database, then starts every platform whose credentials are "
        "set. With none set, starts the console chat.",
    )
    commands.add_parser(
        "chat",
        help="chat in the terminal; reads one message per line from a pipe",
        description="Terminal chat through the same path as Telegram and Slack. "
        "Example: printf '/help\\nhello\\n' | switchboard chat",
    )
    db = commands.add_parser("db", help="database schema commands")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply migrations (default: to the newest)")
    upgrade.add_argument("revision", nargs="?", default="head")
    downgrade = db_commands.add_parser("downgrade", help="revert migrations to REVISION")
    downgrade.add_argument("revision", help="a revision id (0011), or base for none")

    models = commands.add_parser("models", help="model files")
    model_commands = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    model_commands.add_parser(
        "fetch", help="fetch and convert the offline default models (idempotent)"
    )
    model_commands.add_parser(
        "warm",
        help="load every configured model once (fetching hub models into the cache), "
        "and report how long each took",
        description="Loads the chat, sentiment, embedding and image models the settings name, "
        "so the first user does not wait for downloads or conversions. Set WARM_MODELS=true "
        "to load them at every start-up instead of on first use.",
    )
    serve = commands.add_parser(
        "serve-models",
        help="serve the local models over HTTP (OpenAI-compatible, plus /classify)",
        description="Runs the model host as an HTTP server: /v1/chat/completions (SSE "
        "streaming), /v1/embeddings, /v1/images/generations, /v1/models, /classify and "
        "/openapi.json. Point bots at it with MODEL_HOST_URL.",
    )
    serve.add_argument("--host", help="interface to listen on (default MODEL_SERVER_HOST)")
    serve.add_argument("--port", type=PORT, help="port (default MODEL_SERVER_PORT)")
    serve.add_argument(
        "--lazy", action="store_true", help="load each model on its first request, not at start"
    )
    kb_cli.add_parser(commands)  # knowledge base (issue 6)
    handoff_cli.add_parser(commands)
    shop_cli.add_parsers(commands)  # catalog, purchases, eval recommend (issue 7)
    return parser


def _settings_errors(exc: ValidationError) -> str:
    """Each bad setting's name and what is wrong with it, never its value: that may be a secret
    and, for a check over several settings, pydantic's input is all of them."""
    return "; ".join(
        f"{'.'.join(map(str, error['loc'])).upper() or 'settings'}: "
        + error["msg"].removeprefix("Value error, ")
        for error in exc.errors(include_url=False, include_input=False)
    )


def _database_url(settings: Settings) -> str:
    """The settings' database URL, once an engine for it builds (without connecting), so that a
    URL SQLAlchemy cannot use is told as such. The reasons are fixed words: SQLAlchemy's
    messages quote parts of the URL, and an unescaped "/" or "@" in a password makes that part
    the password."""
    from sqlalchemy.exc import ArgumentError, InvalidRequestError, NoSuchModuleError

    from bot.compose import ConfigurationError
    from storage.db import create_engine

    try:
        url = settings.db_url  # rewriting a postgresql:// URL for asyncpg parses it too
        create_engine(url)
    except NoSuchModuleError:
        reason = f"SQLAlchemy knows no such database; {DATABASE_URL_HINT}"
    except ArgumentError:
        reason = f"it does not parse; {DATABASE_URL_HINT}"
    except ImportError as exc:
        reason = f"its driver ({exc.name or 'a module'}) is not installed; {DATABASE_URL_HINT}"
    except InvalidRequestError:
        reason = f"its driver is not an asyncio one; {DATABASE_URL_HINT}"
    except ValueError:
        reason = (
            "it is malformed; check that the port is a number and that special characters in "
            "the password are percent-encoded"
        )
    else:
        return url
    raise ConfigurationError(f"DATABASE_URL is not a usable database URL: {reason}")


def _upgrade(settings: Settings, revision: str = "head", *, down: bool = False) -> None:
    """Migrate the database; what stops it (no server, an unknown revision) is told in a line
    (`ConfigurationError`) that never holds DATABASE_URL, which may carry a password."""
    from alembic.util import CommandError
    from sqlalchemy.exc import DBAPIError

    from bot.compose import ConfigurationError
    from bot.migrate import downgrade, upgrade

    try:
        (downgrade if down else upgrade)(_database_url(settings), revision)
    except CommandError as exc:
        raise ConfigurationError(f"database migration: {exc}") from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot reach the database ({exc.strerror or exc}): check DATABASE_URL and that "
            "the server is up"
        ) from None
    except DBAPIError as exc:
        reason = (str(exc.orig or "").splitlines() or [type(exc).__name__])[0]
        raise ConfigurationError(f"database error while migrating: {reason}") from None


async def _chat(settings: Settings) -> int:
    from bot.compose import build_app
    from bot.platforms.console import ConsolePlatform
    from bot.runner import check_model_device
    from handlers.resume import resume_abandoned

    app = build_app(settings)
    console = ConsolePlatform(image_dir=settings.data_dir / "images")
    if console.interactive:
        from bot.logs import log_to_file

        log_to_file(settings.data_dir / "logs" / "console.log")
    try:
        check_model_device(settings)
        if settings.warm_models:
            from bot.model_services import warm

            await warm(app.services)
        # What a killed console session was answering is answered now, before new input.
        await resume_abandoned(
            app.sessions,
            app.dispatcher,
            platform=console.name,
            responder_for=console.responder_for,
            idle_for=settings.inbox_resume_after,
        )
        await console.start(app.dispatcher.dispatch)
    finally:
        await app.close()
    return 0


async def _run(settings: Settings) -> int:
    from bot.runner import configured_platforms, run_platforms

    platforms = configured_platforms(settings)
    if not platforms:
        print(NO_PLATFORM_HINT, file=sys.stderr)
        return await _chat(settings)
    return await run_platforms(settings, platforms)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "models":
        # Each model load draws a progress bar: noise in a chat, a service log or kb add's own
        # bar. `models fetch` and `models warm` keep theirs, loading is what they are for.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"switchboard: bad configuration: {_settings_errors(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # pydantic-settings' own errors name the variable, not its value
        print(f"switchboard: bad configuration: {exc}", file=sys.stderr)
        return 2
    from bot.logs import configure_logging

    configure_logging(args.log_level or settings.log_level, settings.secrets())
    from bot.compose import ConfigurationError
    from services.modelhost.offline import OfflineModelError

    try:
        if args.command == "db":
            _upgrade(settings, args.revision, down=args.db_command == "downgrade")
            return 0
        if args.command == "models" and args.models_command == "warm":
            from bot.model_services import warm_models

            return asyncio.run(warm_models(settings))
        if args.command == "models":
            from services.modelhost.offline import smollm2_path

            print(f"text model ready: {smollm2_path(settings.models_dir)}")
            return 0
        if args.command == "serve-models":
            from bot.model_services import serve_models

            host = args.host or settings.model_server_host
            port = args.port or settings.model_server_port
            return asyncio.run(serve_models(settings, host=host, port=port, warm=not args.lazy))
        if args.command == "eval":  # issue 7; reads files only, no database
            return asyncio.run(shop_cli.run(settings, args))
        _upgrade(settings)
        if args.command == "kb":  # knowledge base (issue 6)
            return asyncio.run(kb_cli.run(settings, args))
        if args.command == "handoffs":
            return asyncio.run(handoff_cli.run(settings, args))
        if args.command in ("catalog", "purchases"):  # issue 7
            return asyncio.run(shop_cli.run(settings, args))
        if args.command == "chat":
            return asyncio.run(_chat(settings))
        return asyncio.run(_run(settings))
    except ConfigurationError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
    except OfflineModelError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
