"""The composition root: builds the store, the services and the dispatcher from Settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from bot import model_services
from bot.model_services import ConfigurationError
from bot.settings import Settings, TextProvider
from handlers import admin, basic, chat, feedback, images, intents, qa, sentiment, shop
from handlers.access import (
    AccessMiddleware,
    AccessPolicy,
    MessageLengthMiddleware,
    QuotaMiddleware,
    Quotas,
)
from handlers.dispatcher import Dispatcher
from handlers.middleware import (
    ConversationMiddleware,
    ErrorMiddleware,
    InboxMiddleware,
    Middleware,
    OrderingMiddleware,
)
from handlers.ordering import InboxOrderingMiddleware
from handlers.router import Router
from handlers.sentiment import TurnSentimentMiddleware
from services.container import GenerationConfig, Services
from services.kb.knowledge import KnowledgeBase
from services.modelhost.offline import SMOLLM2
from services.qa.answer import QAConfig
from services.types import TextGenerator
from storage.db import SessionFactory, create_engine, session_factory
from storage.group_commit import GroupCommit

log = logging.getLogger(__name__)

DEFAULT_TEXT_MODELS = {
    TextProvider.LOCAL: SMOLLM2,
    TextProvider.OPENAI: "gpt-4o-mini",
    TextProvider.ZHIPUAI: "glm-4-flash",
}


__all__ = ["App", "ConfigurationError", "build_app", "build_router", "build_services"]


def build_text_generator(settings: Settings) -> TextGenerator:
    """The configured provider, or a fallback chain when TEXT_PROVIDER lists several.
    TEXT_MODEL names the first provider's model; fallbacks use their defaults."""
    first = settings.text_model or DEFAULT_TEXT_MODELS[settings.text_provider]
    primary = _text_generator(settings, settings.text_provider, first)
    fallbacks = [p for p in settings.text_fallbacks if p is not settings.text_provider]
    if not fallbacks:
        return primary
    from services.providers.resilient import FallbackTextGenerator

    chain = [_text_generator(settings, p, DEFAULT_TEXT_MODELS[p]) for p in fallbacks]
    return FallbackTextGenerator([primary, *chain])


def _text_generator(settings: Settings, provider: TextProvider, model: str) -> TextGenerator:
    if provider is not TextProvider.LOCAL:
        return model_services.hosted_text(settings, provider, model)
    remote = model_services.remote_text_generator(settings, model)
    if remote is not None:
        return remote
    from services.providers.local import LocalTextGenerator

    return LocalTextGenerator(
        model=model,
        models_dir=settings.models_dir,
        device=settings.model_device,
        context_window=settings.text_context_window,
        max_batch=settings.text_max_batch,
        max_wait_ms=settings.text_batch_wait_ms,
        max_queue=settings.model_queue_size,
    )


# --- knowledge base and QA (issue 6) ---------------------------------------------------


def qa_config(settings: Settings) -> QAConfig:
    """Hosted models rewrite follow-ups and write grounded answers; the small local default
    cannot be trusted to, so its answers are quoted (TEXT_MODEL_CAPABLE overrides)."""
    capable = settings.text_model_capable
    if capable is None:
        capable = settings.text_provider is not TextProvider.LOCAL
    return QAConfig(top_k=settings.qa_top_k, capable_model=capable)


def add_knowledge_base(services: Services, settings: Settings) -> Services:
    if services.embeddings is not None:
        services.kb = KnowledgeBase(services.embeddings)
    services.qa = qa_config(settings)
    return services


# --- end knowledge base and QA -----------------------------------------------------------


# --- recommendations (issue 7) -----------------------------------------------------------


def add_recommendations(services: Services, settings: Settings) -> Services:
    """/buy, /purchases and /recommend. Without embeddings /buy still finds products by id and
    name, and the hybrid runs on co-occurrence and popularity alone."""
    from services.recommend.rerank import LLMReranker
    from services.recommend.service import Recommender

    # A capable model re-ranks and words the reasons; the offline SmolLM2 is too small to.
    # TEXT_MODEL_CAPABLE (shared with QA) decides; unset means: hosted providers are capable.
    capable = settings.text_model_capable
    if capable is None:
        capable = settings.text_provider is not TextProvider.LOCAL
    reranker = LLMReranker(services.text) if capable else None
    services.recommendations = Recommender(services.embeddings, reranker=reranker)
    return services


# --- end recommendations -----------------------------------------------------------------


def build_services(settings: Settings) -> Services:
    services = Services(
        text=build_text_generator(settings),
        generation=GenerationConfig(
            system_prompt=settings.system_prompt,
            max_tokens=settings.text_max_tokens,
            temperature=settings.text_temperature,
            english_only=settings.text_provider is TextProvider.LOCAL
            and settings.text_model is None,
        ),
        # Model-backed services load nothing until first use (or `models warm`).
        sentiment=model_services.build_sentiment(settings),
        embeddings=model_services.build_embedder(settings),
        images=model_services.build_images(settings),
        image_config=model_services.image_config(settings),
    )
    services = add_knowledge_base(services, settings)  # knowledge base and QA (issue 6)
    return add_recommendations(services, settings)  # recommendations (issue 7)


def access_policy(settings: Settings) -> AccessPolicy:
    return AccessPolicy.of(
        users=settings.allowed_users,
        chats=settings.allowed_chats,
        workspaces=settings.allowed_slack_workspaces,
        admins=settings.admin_users,
    )


def quotas(settings: Settings) -> Quotas:
    return Quotas(
        messages_per_day=settings.quota_messages_per_day,
        tokens_per_day=settings.quota_tokens_per_day,
        images_per_day=settings.quota_images_per_day,
        messages_per_minute=settings.rate_limit_per_minute,
    )


def build_router() -> Router:
    router = Router()
    basic.register(router)
    chat.register(router)
    feedback.register(router)
    admin.register(router)
    sentiment.register(router)
    images.register(router)
    shop.register(router)  # /buy, /purchases, /recommend (issue 7)
    # --- knowledge base and QA (issue 6): /ask, then intent routing of free text, which
    # replaces chat's text handler and reaches every feature by command name, so it goes last.
    qa.register(router)
    intents.register(router)
    # --- end knowledge base and QA
    return router


@dataclass(slots=True)
class App:
    settings: Settings
    engine: AsyncEngine
    sessions: SessionFactory
    services: Services
    router: Router
    dispatcher: Dispatcher
    turn_sentiment: TurnSentimentMiddleware | None = None
    commits: GroupCommit | None = None

    async def close(self) -> None:
        if self.turn_sentiment is not None:
            await self.turn_sentiment.drain()
        if self.commits is not None:
            await self.commits.wait_idle()
        await self.engine.dispose()


def ordering(engine: AsyncEngine, sessions: SessionFactory, settings: Settings) -> Middleware:
    """PostgreSQL may be shared by several replicas, so order comes from the inbox there;
    SQLite means one process, where an in-process lock per conversation is enough."""
    if engine.dialect.name == "postgresql":
        return InboxOrderingMiddleware(sessions, stale_after=settings.inbox_resume_after)
    return OrderingMiddleware()


def build_app(settings: Settings, *, services: Services | None = None) -> App:
    engine = create_engine(
        settings.db_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
    )
    sessions = session_factory(engine)
    services = services or build_services(settings)
    router = build_router()
    turn_sentiment = TurnSentimentMiddleware(sessions, services)
    commits = GroupCommit(engine)
    dispatcher = Dispatcher(
        [
            InboxMiddleware(
                sessions, commits, heartbeat=min(10.0, settings.inbox_resume_after / 3)
            ),
            ErrorMiddleware(),
            AccessMiddleware(access_policy(settings)),
            MessageLengthMiddleware(settings.max_message_chars),
            # In turn: a burst of one user's messages is checked against what the earlier ones
            # spent, not all at once.
            ordering(engine, sessions, settings),
            QuotaMiddleware(sessions, quotas(settings)),
            turn_sentiment,
            ConversationMiddleware(sessions, services, router, engine=engine, commits=commits),
        ]
    )
    return App(settings, engine, sessions, services, router, dispatcher, turn_sentiment, commits)
