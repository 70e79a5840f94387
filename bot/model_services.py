"""Builds the model-backed services (sentiment, embeddings, images, the remote text model) from
Settings, and the model server's host; `bot.compose` calls these.

With ``MODEL_HOST_URL`` set, every local model is reached on that `serve-models` server: chat,
embeddings and images through the OpenAI-compatible routes, sentiment through ``/classify``;
this process then loads no model itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bot.settings import ImageProvider, SentimentProvider, Settings, TextProvider
from services.container import ImageConfig, Services, Warmable
from services.modelhost.server import ModelHost
from services.types import Embedder, ImageGenerator, SentimentAnalyzer, TextGenerator

log = logging.getLogger(__name__)

DEFAULT_SENTIMENT_MODEL = "minilm-sst2"
DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"
DEFAULT_IMAGE_MODELS = {
    ImageProvider.LOCAL: "stabilityai/sd-turbo",
    ImageProvider.OPENAI: "dall-e-3",
    ImageProvider.ZHIPUAI: "cogview-3-flash",
}
DEFAULT_LLM_SENTIMENT_MODELS = {
    SentimentProvider.OPENAI: "gpt-4o-mini",
    SentimentProvider.ZHIPUAI: "glm-4-flash",
}
# Context window assumed for the model server's chat model unless TEXT_CONTEXT_WINDOW says.
REMOTE_CONTEXT_WINDOW = 8192


class ConfigurationError(RuntimeError):
    pass


def _host(settings: Settings) -> tuple[str, str] | None:
    """(base URL, API key) of the model server; the openai SDK insists on some key."""
    if not settings.model_host_url:
        return None
    key = settings.model_host_api_key
    return settings.model_host_url.rstrip("/"), key.get_secret_value() if key else "none"


def remote_text_generator(settings: Settings, model: str) -> TextGenerator | None:
    """The model server's chat model when MODEL_HOST_URL is set, else None."""
    host = _host(settings)
    if host is None:
        return None
    from services.providers.openai import OpenAITextGenerator

    return OpenAITextGenerator(
        api_key=host[1],
        model=model,
        base_url=f"{host[0]}/v1",
        timeout=settings.text_timeout,
        context_window=settings.text_context_window or REMOTE_CONTEXT_WINDOW,
    )


def hosted_text(settings: Settings, provider: TextProvider, model: str) -> TextGenerator:
    """An OpenAI or ZhipuAI chat model (TEXT_CONTEXT_WINDOW overrides its window)."""
    window = settings.text_context_window
    extra = {"context_window": window} if window else {}
    if provider is TextProvider.OPENAI:
        from services.providers.openai import OpenAITextGenerator

        if settings.openai_api_key is None:
            raise ConfigurationError("the openai provider needs OPENAI_API_KEY")
        return OpenAITextGenerator(
            api_key=settings.openai_api_key.get_secret_value(),
            model=model,
            base_url=settings.openai_base_url,
            timeout=settings.text_timeout,
            **extra,
        )
    from services.providers.zhipuai import ZhipuAITextGenerator

    if settings.zhipuai_api_key is None:
        raise ConfigurationError("the zhipuai provider needs ZHIPUAI_API_KEY")
    return ZhipuAITextGenerator(
        api_key=settings.zhipuai_api_key.get_secret_value(),
        model=model,
        base_url=settings.zhipuai_base_url,
        timeout=settings.text_timeout,
        **extra,
    )


def build_sentiment(settings: Settings) -> SentimentAnalyzer:
    provider = settings.sentiment_provider
    model = settings.sentiment_model
    host = _host(settings)
    if provider is SentimentProvider.LOCAL and host is not None:
        provider = SentimentProvider.REMOTE
    if provider is SentimentProvider.REMOTE:
        from services.providers.remote import RemoteSentimentAnalyzer

        if host is None:
            raise ConfigurationError("SENTIMENT_PROVIDER=remote needs MODEL_HOST_URL")
        return RemoteSentimentAnalyzer(
            base_url=host[0], model=model or DEFAULT_SENTIMENT_MODEL, api_key=host[1]
        )
    if provider in DEFAULT_LLM_SENTIMENT_MODELS:
        from services.providers.llm_sentiment import LLMSentimentAnalyzer

        text_provider = TextProvider(provider.value)
        chat = model or DEFAULT_LLM_SENTIMENT_MODELS[provider]
        return LLMSentimentAnalyzer(hosted_text(settings, text_provider, chat))
    from services.modelhost.batched import BatchedSentimentAnalyzer
    from services.providers.local_sentiment import LocalSentimentAnalyzer

    return BatchedSentimentAnalyzer(
        LocalSentimentAnalyzer(
            model=model or DEFAULT_SENTIMENT_MODEL, device=settings.model_device
        ),
        max_batch=settings.sentiment_max_batch,
        max_wait_ms=settings.model_batch_wait_ms,
        max_queue=settings.model_queue_size,
    )


def build_embedder(settings: Settings) -> Embedder:
    model = settings.embedding_model or DEFAULT_EMBEDDING_MODEL
    host = _host(settings)
    if host is not None:
        from services.providers.openai_embeddings import OpenAIEmbedder

        return OpenAIEmbedder(api_key=host[1], model=model, base_url=f"{host[0]}/v1")
    from services.providers.local_embeddings import LocalEmbedder

    return LocalEmbedder(
        model=model,
        models_dir=settings.models_dir,
        device=settings.model_device,
        max_batch=settings.embedding_max_batch,
        max_wait_ms=settings.model_batch_wait_ms,
        max_queue=settings.model_queue_size,
    )


def build_images(settings: Settings) -> ImageGenerator:
    provider = settings.image_provider
    model = settings.image_model or DEFAULT_IMAGE_MODELS[provider]
    host = _host(settings)
    if provider is ImageProvider.ZHIPUAI:
        from services.providers.zhipuai_images import ZhipuAIImageGenerator

        if settings.zhipuai_api_key is None:
            raise ConfigurationError("IMAGE_PROVIDER=zhipuai needs ZHIPUAI_API_KEY")
        return ZhipuAIImageGenerator(
            api_key=settings.zhipuai_api_key.get_secret_value(),
            model=model,
            base_url=settings.zhipuai_base_url,
            timeout=settings.image_timeout,
        )
    if provider is ImageProvider.OPENAI or host is not None:
        from services.providers.openai_images import OpenAIImageGenerator

        base_url: str | None
        if host is not None and provider is ImageProvider.LOCAL:
            api_key, base_url = host[1], f"{host[0]}/v1"
        elif settings.openai_api_key is None:
            raise ConfigurationError("IMAGE_PROVIDER=openai needs OPENAI_API_KEY")
        else:
            api_key, base_url = settings.openai_api_key.get_secret_value(), settings.openai_base_url
        return OpenAIImageGenerator(
            api_key=api_key, model=model, base_url=base_url, timeout=settings.image_timeout
        )
    from services.providers.local_images import LocalImageGenerator

    return LocalImageGenerator(
        model=model,
        device=settings.model_device,
        steps=settings.image_steps,
        max_batch=settings.image_max_batch,
        max_wait_ms=settings.model_batch_wait_ms,
        max_queue=settings.model_queue_size,
    )


def image_config(settings: Settings) -> ImageConfig:
    hosted = settings.image_provider is not ImageProvider.LOCAL
    return ImageConfig(
        default_size=settings.image_size or ("1024x1024" if hosted else "512x512"),
        max_n=settings.image_max_n,
        max_side=settings.image_max_side,
        max_prompt_chars=settings.image_max_prompt_chars,
    )


def local_settings(settings: Settings) -> Settings:
    """The settings `serve-models` runs with: every model local, whatever the bot uses."""
    update: dict[str, object] = {"model_host_url": None}
    if settings.text_provider is not TextProvider.LOCAL:
        update |= {"text_provider": TextProvider.LOCAL, "text_model": None}
    if settings.sentiment_provider is not SentimentProvider.LOCAL:
        update |= {"sentiment_provider": SentimentProvider.LOCAL, "sentiment_model": None}
    if settings.image_provider is not ImageProvider.LOCAL:
        update |= {"image_provider": ImageProvider.LOCAL, "image_model": None}
    return settings.model_copy(update=update)


def build_model_host(settings: Settings, *, text: TextGenerator) -> ModelHost:
    """What `serve-models` serves, from :func:`local_settings`."""
    key = settings.model_host_api_key
    return ModelHost(
        text=text,
        embeddings=build_embedder(settings),
        sentiment=build_sentiment(settings),
        images=build_images(settings),
        image_size=settings.image_size or "512x512",
        max_images=settings.image_max_n,
        max_side=settings.image_max_side,
        api_key=key.get_secret_value() if key else None,
    )


@dataclass(frozen=True, slots=True)
class Warmed:
    """One model's load: how long it took, or why it failed."""

    name: str
    seconds: float
    error: str | None = None


async def _warm_each(models: Sequence[object]) -> list[Warmed]:
    """Load each Warmable model, logging its time; one that fails is logged and skipped."""
    results: list[Warmed] = []
    for model in models:
        if not isinstance(model, Warmable):
            continue
        name = str(getattr(model, "name", type(model).__name__))
        started = time.perf_counter()
        try:
            await model.warm()
        except Exception as exc:
            log.error("could not load %s (it will fail until it can): %r", name, exc)
            first = (str(getattr(exc, "detail", "") or exc).splitlines() or [repr(exc)])[0]
            results.append(Warmed(name, time.perf_counter() - started, first[:200]))
            continue
        seconds = time.perf_counter() - started
        log.info("loaded %s in %.1fs", name, seconds)
        results.append(Warmed(name, seconds))
    return results


async def warm(services: Services) -> list[Warmed]:
    """Load every local model of ``services`` now instead of on first use."""
    return await _warm_each(
        [services.text, services.sentiment, services.embeddings, services.images]
    )


async def warm_models(settings: Settings) -> int:
    """`switchboard models warm`."""
    from bot.compose import build_services

    services = build_services(settings)
    if settings.model_host_url:
        print(f"MODEL_HOST_URL is set: models load on {settings.model_host_url}, not here")
    results = await warm(services)
    for result in results:
        if result.error is None:
            print(f"ready: {result.name} in {result.seconds:.1f} s")
        else:
            print(f"FAILED: {result.name}: {result.error}")
    if any(r.error is not None for r in results):
        print(
            "A model that cannot be downloaded here needs its setting (TEXT_MODEL, IMAGE_MODEL,"
            " ...) pointed at a local folder, or a hosted provider (see .env.example)."
        )
    # A model that cannot load fails the command, so deployment scripts notice.
    return 1 if any(r.error is not None for r in results) else 0


async def warm_host(model_host: ModelHost) -> None:
    """Load each model the host serves; one that fails is marked so in ``model_host.failed``."""
    for kind, model in model_host.served().items():
        for result in await _warm_each([model]):
            if result.error is not None:
                model_host.failed[kind] = result.error


async def serve_models(settings: Settings, *, host: str, port: int, warm: bool) -> int:
    """`switchboard serve-models`: the local models over HTTP until interrupted."""
    import uvicorn

    from bot.compose import build_text_generator
    from services.modelhost.server import build_model_app

    local = local_settings(settings)
    model_host = build_model_host(local, text=build_text_generator(local))
    if warm:
        await warm_host(model_host)
    if model_host.api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving models on %s without MODEL_HOST_API_KEY: anyone can use them", host)
    config = uvicorn.Config(
        build_model_app(model_host),
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        log_config=None,  # keep uvicorn's records on the root logger, which redacts secrets
        # Bots keep pooled connections open between requests; uvicorn's 5 s default closes
        # them under their feet.
        timeout_keep_alive=75,
    )
    log.info("model server on http://%s:%s serving %s", host, port, model_host.models())
    if model_host.failed:
        log.warning("not serving until they load: %s", ", ".join(sorted(model_host.failed)))
    await uvicorn.Server(config).serve()
    return 0
