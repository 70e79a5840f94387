"""The composition root: builds the store, the services and the dispatcher from Settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.settings import Settings, TextProvider
from handlers import basic, chat, feedback
from handlers.dispatcher import Dispatcher
from handlers.middleware import (
    ConversationMiddleware,
    ErrorMiddleware,
    InboxMiddleware,
    OrderingMiddleware,
)
from handlers.router import Router
from services.container import GenerationConfig, Services
from services.modelhost.offline import SMOLLM2
from services.types import TextGenerator
from storage.db import SessionFactory, create_engine, session_factory

log = logging.getLogger(__name__)

DEFAULT_TEXT_MODELS = {
    TextProvider.LOCAL: SMOLLM2,
    TextProvider.OPENAI: "gpt-4o-mini",
    TextProvider.ZHIPUAI: "glm-4-flash",
}


class ConfigurationError(RuntimeError):
    pass


def build_text_generator(settings: Settings) -> TextGenerator:
    model = settings.text_model or DEFAULT_TEXT_MODELS[settings.text_provider]
    window = settings.text_context_window
    if settings.text_provider is TextProvider.OPENAI:
        from services.providers.openai import OpenAITextGenerator

        if settings.openai_api_key is None:
            raise ConfigurationError("TEXT_PROVIDER=openai needs OPENAI_API_KEY")
        return OpenAITextGenerator(
            api_key=settings.openai_api_key.get_secret_value(),
            model=model,
            base_url=settings.openai_base_url,
            timeout=settings.text_timeout,
            **({"context_window": window} if window else {}),
        )
    if settings.text_provider is TextProvider.ZHIPUAI:
        from services.providers.zhipuai import ZhipuAITextGenerator

        if settings.zhipuai_api_key is None:
            raise ConfigurationError("TEXT_PROVIDER=zhipuai needs ZHIPUAI_API_KEY")
        return ZhipuAITextGenerator(
            api_key=settings.zhipuai_api_key.get_secret_value(),
            model=model,
            base_url=settings.zhipuai_base_url,
            timeout=settings.text_timeout,
            **({"context_window": window} if window else {}),
        )
    from services.providers.local import LocalTextGenerator

    return LocalTextGenerator(
        model=model,
        models_dir=settings.models_dir,
        device=settings.model_device,
        context_window=window,
    )


def build_services(settings: Settings) -> Services:
    return Services(
        text=build_text_generator(settings),
        generation=GenerationConfig(
            system_prompt=settings.system_prompt,
            max_tokens=settings.text_max_tokens,
            temperature=settings.text_temperature,
        ),
    )


def build_router() -> Router:
    router = Router()
    basic.register(router)
    chat.register(router)
    feedback.register(router)
    return router


@dataclass(slots=True)
class App:
    settings: Settings
    engine: AsyncEngine
    sessions: SessionFactory
    services: Services
    router: Router
    dispatcher: Dispatcher

    async def close(self) -> None:
        await self.engine.dispose()


def build_app(settings: Settings, *, services: Services | None = None) -> App:
    engine = create_engine(settings.db_url)
    sessions = session_factory(engine)
    services = services or build_services(settings)
    router = build_router()
    dispatcher = Dispatcher(
        [
            InboxMiddleware(sessions, heartbeat=min(10.0, settings.inbox_resume_after / 3)),
            ErrorMiddleware(),
            OrderingMiddleware(),
            ConversationMiddleware(sessions, services, router),
        ]
    )
    return App(settings, engine, sessions, services, router, dispatcher)
