"""`switchboard models warm`: each local model's load time, or why it failed."""

from __future__ import annotations

import pytest

from bot import cli
from bot.settings import Settings
from services.container import GenerationConfig, Services
from services.types import ProviderError
from tests.fakes.text import FakeTextGenerator


class WarmText(FakeTextGenerator):
    name = "local:tiny-text"

    async def warm(self) -> None:
        return None


class UnreachableImages:
    name = "local:stabilityai/sd-turbo"

    async def warm(self) -> None:
        raise ProviderError("unavailable", detail="local images: OSError('no model hub here')")


def test_warm_reports_each_model_and_fails_when_one_cannot_load(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = Services(
        WarmText(), GenerationConfig(system_prompt="t", max_tokens=8, temperature=0)
    )
    services.images = UnreachableImages()  # type: ignore[assignment]
    monkeypatch.setattr("bot.compose.build_services", lambda _settings: services)
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    assert cli.main(["models", "warm"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ready: local:tiny-text in ") and out[0].endswith(" s")
    assert out[1] == (
        "FAILED: local:stabilityai/sd-turbo: local images: OSError('no model hub here')"
    )
    assert "local folder" in out[2]


@pytest.mark.parametrize("port", ["0", "65536", "99999", "http"])
def test_serve_models_takes_only_a_tcp_port(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve-models", "--lazy", "--port", port])
    assert exit_info.value.code == 2
    assert "argument --port: " in capsys.readouterr().err
