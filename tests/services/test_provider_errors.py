"""Error statuses from hosted APIs: what users are told, what the log says, and which ones
count towards the circuit breaker. The real SDKs run against fake servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest

from services.modelhost.batcher import BusyError
from services.modelhost.server import ModelHost, build_model_app
from services.providers.http_errors import StatusErrors, misconfigured, openai_key_setting
from services.providers.openai import OpenAITextGenerator
from services.providers.openai_embeddings import OpenAIEmbedder
from services.providers.openai_images import OpenAIImageGenerator
from services.providers.resilient import FallbackTextGenerator
from services.providers.zhipuai import ZhipuAITextGenerator
from services.providers.zhipuai_images import ZhipuAIImageGenerator
from services.types import ProviderError, TextGenerator, Turn
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.text import FakeTextGenerator
from tests.modelhost.conftest import serving

KEY = "sk-secret-key-1234"
UNAVAILABLE = "The text service is unavailable right now, try again in a minute."


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    fake = FakeOpenAIServer(reply="from primary")
    await fake.start()
    yield fake
    fake.release()
    await fake.stop()


async def drain(generator: TextGenerator, text: str = "hi") -> str:
    chunks = generator.stream([Turn("user", text)], max_tokens=8, temperature=0)
    return "".join([chunk async for chunk in chunks])


Call = Callable[[FakeOpenAIServer], Awaitable[object]]


async def _openai_text(server: FakeOpenAIServer) -> object:
    return await drain(OpenAITextGenerator(api_key=KEY, model="m", base_url=server.openai_base_url))


async def _zhipuai_text(server: FakeOpenAIServer) -> object:
    return await drain(
        ZhipuAITextGenerator(api_key=KEY, model="glm", base_url=server.zhipuai_base_url)
    )


async def _openai_images(server: FakeOpenAIServer) -> object:
    generator = OpenAIImageGenerator(api_key=KEY, model="m", base_url=server.openai_base_url)
    return await generator.generate("a cat", size="512x512", n=1)


async def _zhipuai_images(server: FakeOpenAIServer) -> object:
    generator = ZhipuAIImageGenerator(api_key=KEY, base_url=server.zhipuai_base_url)
    return await generator.generate("a cat", size="512x512", n=1)


async def _openai_embeddings(server: FakeOpenAIServer) -> object:
    embedder = OpenAIEmbedder(api_key=KEY, model="m", base_url=server.openai_base_url, dim=3)
    return await embedder.embed(["hello"])


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize(
    ("call", "service", "setting"),
    [
        (_openai_text, "text", "OPENAI_API_KEY"),
        (_zhipuai_text, "text", "ZHIPUAI_API_KEY"),
        (_openai_images, "image", "OPENAI_API_KEY"),
        (_zhipuai_images, "image", "ZHIPUAI_API_KEY"),
        (_openai_embeddings, "embedding", "OPENAI_API_KEY"),
    ],
)
async def test_a_refused_key_says_not_set_up_and_names_the_setting(
    server: FakeOpenAIServer, call: Call, service: str, setting: str, status: int
) -> None:
    server.fail_status = status
    with pytest.raises(ProviderError) as caught:
        await call(server)
    error = caught.value
    assert error.user_message == misconfigured(service)
    assert "try again" not in error.user_message
    assert not error.transient
    assert setting in error.detail and KEY not in error.detail


async def test_a_wrong_model_host_key_names_the_model_host_setting() -> None:
    host = ModelHost(text=FakeTextGenerator(), api_key="right-key")
    async with serving(build_model_app(host)) as url:
        bot_side = OpenAITextGenerator(api_key="wrong-key", model="m", base_url=f"{url}/v1")
        with pytest.raises(ProviderError) as caught:
            await drain(bot_side)
    assert caught.value.user_message == misconfigured("text")
    assert "MODEL_HOST_API_KEY" in caught.value.detail
    assert "wrong-key" not in caught.value.detail


class Busy(FakeTextGenerator):
    async def stream(
        self, turns: Sequence[Turn], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str]:
        raise BusyError("m")
        yield ""  # an async generator, as the host expects


async def test_a_busy_model_host_says_busy_not_unavailable() -> None:
    async with serving(build_model_app(ModelHost(text=Busy()))) as url:
        bot_side = OpenAITextGenerator(api_key="k", model="m", base_url=f"{url}/v1", max_retries=0)
        with pytest.raises(ProviderError) as caught:
            await drain(bot_side)
    assert caught.value.user_message == BusyError("m").user_message
    assert caught.value.transient


def _chain(server: FakeOpenAIServer, *, timeout: float = 5.0) -> FallbackTextGenerator:
    primary = OpenAITextGenerator(
        api_key=KEY, model="m", base_url=server.openai_base_url, timeout=timeout, max_retries=0
    )
    return FallbackTextGenerator([primary, FakeTextGenerator(answer="from fallback")])


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_refused_requests_fall_back_without_opening_the_breaker(
    server: FakeOpenAIServer, status: int
) -> None:
    chain = _chain(server)
    server.fail_status = status
    for _ in range(3):
        assert (await drain(chain)).strip() == "from fallback"
    server.fail_status = None
    assert (await drain(chain)).strip() == "from primary"  # another user, still the primary
    assert len(server.requests) == 4


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_outages_open_the_breaker(server: FakeOpenAIServer, status: int) -> None:
    chain = _chain(server)
    server.fail_status = status
    for _ in range(3):
        assert (await drain(chain)).strip() == "from fallback"
    server.fail_status = None
    assert (await drain(chain)).strip() == "from fallback"  # skipped during the cool-down
    assert len(server.requests) == 3


async def test_timeouts_open_the_breaker(server: FakeOpenAIServer) -> None:
    chain = _chain(server, timeout=0.2)
    server.delay = 30
    for _ in range(3):
        assert (await drain(chain)).strip() == "from fallback"
    server.release()
    assert (await drain(chain)).strip() == "from fallback"
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("status", "message", "transient"),
    [
        (400, UNAVAILABLE, False),
        (401, misconfigured("text"), False),
        (403, misconfigured("text"), False),
        (404, misconfigured("text"), False),
        (408, UNAVAILABLE, True),
        (429, UNAVAILABLE, True),
        (500, UNAVAILABLE, True),
        (503, UNAVAILABLE, True),
    ],
)
def test_statuses_map_to_messages_and_transience(
    status: int, message: str, transient: bool
) -> None:
    errors = StatusErrors(
        provider="openai:m",
        model="m",
        unavailable=UNAVAILABLE,
        service="text",
        key_setting="OPENAI_API_KEY",
    )
    error = errors.to_provider_error(status, "error body")
    assert (error.user_message, error.transient) == (message, transient)


@pytest.mark.parametrize("base_url", [None, "https://api.openai.com/v1"])
def test_openai_itself_needs_openai_api_key(base_url: str | None) -> None:
    assert openai_key_setting(base_url) == "OPENAI_API_KEY"


def test_another_server_names_both_settings_and_its_host() -> None:
    setting = openai_key_setting("http://gpu-box:8001/v1")
    assert "MODEL_HOST_API_KEY" in setting and "OPENAI_API_KEY" in setting
    assert "gpu-box" in setting
