"""Image providers: a tiny real diffusers pipeline on the CPU, and the real openai and zhipuai
SDKs against the fake OpenAI-compatible server."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import torch
from PIL import Image

from services.images import FLAGGED, REFUSED, UNAVAILABLE, ImageRefused, ImageSizeError
from services.providers.local_images import LocalImageGenerator
from services.providers.openai_images import OpenAIImageGenerator
from services.providers.zhipuai_images import ZhipuAIImageGenerator
from services.types import ProviderError
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.tiny_diffusion import save_tiny_pipeline


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)  # shared test machines: see tests/modelhost/conftest.py
    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd"))


def _size(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        return image.size


async def test_tiny_pipeline_loads_through_from_pretrained_and_draws(tiny_pipeline: Path) -> None:
    generator = LocalImageGenerator(model=str(tiny_pipeline), device="cpu", steps=1, max_wait_ms=20)
    images = await generator.generate("a cat and the dog", size="64x32", n=2)
    assert [_size(png) for png in images] == [(64, 32), (64, 32)]
    assert generator.batcher.batch_sizes == [2]


async def test_sizes_the_vae_cannot_draw_are_refused(tiny_pipeline: Path) -> None:
    generator = LocalImageGenerator(model=str(tiny_pipeline), device="cpu", steps=1)
    with pytest.raises(ImageSizeError):
        await generator.generate("a cat", size="30x30", n=1)


@pytest.mark.parametrize("flag", [True, False])
async def test_the_pipelines_safety_checker_stays_on(tmp_path: Path, flag: bool) -> None:
    folder = save_tiny_pipeline(tmp_path / "checked", safety_flags_everything=flag)
    generator = LocalImageGenerator(model=str(folder), device="cpu", steps=1)
    if flag:
        with pytest.raises(ImageRefused) as refused:
            await generator.generate("anything", size="32x32", n=1)
        assert refused.value.user_message == FLAGGED
    else:
        assert len(await generator.generate("anything", size="32x32", n=1)) == 1


def test_turbo_models_default_to_one_step_without_guidance() -> None:
    from services.providers.local_images import default_steps

    assert default_steps("stabilityai/sd-turbo") == (1, 0.0)
    assert default_steps("runwayml/stable-diffusion-v1-5") == (25, 7.5)


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    fake = FakeOpenAIServer(image=b"\x89PNG\r\n\x1a\npicture")
    await fake.start()
    yield fake
    await fake.stop()


def _hosted(kind: str, server: FakeOpenAIServer) -> OpenAIImageGenerator | ZhipuAIImageGenerator:
    if kind == "openai":
        return OpenAIImageGenerator(
            api_key="sk-test", model="dall-e-2", base_url=server.openai_base_url, max_retries=0
        )
    return ZhipuAIImageGenerator(
        api_key="id.secret", base_url=server.zhipuai_base_url, max_retries=0, timeout=5
    )


@pytest.mark.parametrize("kind", ["openai", "zhipuai"])
async def test_hosted_providers_return_png_bytes(kind: str, server: FakeOpenAIServer) -> None:
    images = await _hosted(kind, server).generate("a fox", size="1024x1024", n=2)
    assert images == [b"\x89PNG\r\n\x1a\npicture"] * 2
    body = server.requests[-1].body
    assert body["prompt"] == "a fox" and body["size"] == "1024x1024"
    if kind == "openai":
        assert body["response_format"] == "b64_json" and body["n"] == 2


@pytest.mark.parametrize("kind", ["openai", "zhipuai"])
async def test_content_policy_refusal_is_a_plain_message(
    kind: str, server: FakeOpenAIServer
) -> None:
    server.refuse_images = True
    with pytest.raises(ImageRefused) as refused:
        await _hosted(kind, server).generate("something forbidden", size="1024x1024", n=1)
    assert refused.value.user_message == REFUSED


@pytest.mark.parametrize("kind", ["openai", "zhipuai"])
async def test_outages_say_try_again_in_a_minute(kind: str, server: FakeOpenAIServer) -> None:
    server.fail_status = 500
    with pytest.raises(ProviderError) as failed:
        await _hosted(kind, server).generate("a fox", size="1024x1024", n=1)
    assert failed.value.user_message == UNAVAILABLE


async def test_a_model_that_fails_to_load_is_not_retried_on_every_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers import AutoPipelineForText2Image

    from services.providers import local_images

    tries = []

    def unreachable_hub(*args: object, **kwargs: object) -> None:
        tries.append(args)
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(AutoPipelineForText2Image, "from_pretrained", unreachable_hub)
    generator = LocalImageGenerator(model="stabilityai/sd-turbo", device="cpu", max_wait_ms=1)
    for _ in range(3):
        with pytest.raises(ProviderError) as info:
            await generator.generate("a fox", size="512x512", n=1)
        assert info.value.user_message == local_images.NOT_LOADED
        assert not info.value.transient  # a setting or a download to fix, not an outage
    assert len(tries) == 1
    monkeypatch.setattr(local_images, "RELOAD_AFTER", 0)
    with pytest.raises(ProviderError):
        await generator.generate("a fox", size="512x512", n=1)
    assert len(tries) == 2
