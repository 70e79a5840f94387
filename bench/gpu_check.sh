#!/usr/bin/env bash
# GPU check for a CUDA host: loads the default chat, sentiment, embedding and image models on
# the GPU and prints load time, latency and throughput for each. Finishes in under five minutes
# (a hard timeout stops it at 290 s). Needs the offline models (`make models`) and, for the
# image model, the Hugging Face hub or a cached stabilityai/sd-turbo (set IMAGE_MODEL to use
# another id or folder).
#
#     bash bench/gpu_check.sh              # on the GPU host, from the repository root
#     GPU_CHECK_DEVICE=cpu bash bench/gpu_check.sh   # dry run of the script itself, slowly
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DEVICE=${GPU_CHECK_DEVICE:-cuda}

if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || {
        echo "gpu_check: no NVIDIA GPU visible (nvidia-smi failed)" >&2
        exit 1
    }
    "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' || {
        echo "gpu_check: this torch has no CUDA; install a CUDA build (TORCH_SPEC in the Makefile)" >&2
        exit 1
    }
fi

export GPU_CHECK_DEVICE=$DEVICE PYTHONPATH=. TOKENIZERS_PARALLELISM=false
exec timeout --signal=INT 290 "$PY" - <<'EOF'
import asyncio
import os
import statistics
import time
from pathlib import Path

import torch

from services.modelhost.batched import BatchedSentimentAnalyzer
from services.providers.local import LocalTextGenerator
from services.providers.local_embeddings import LocalEmbedder
from services.providers.local_images import LocalImageGenerator
from services.providers.local_sentiment import LocalSentimentAnalyzer
from services.types import Turn

DEVICE = os.environ["GPU_CHECK_DEVICE"]
SMALL = DEVICE != "cuda"  # a CPU dry run checks the script, not the numbers
MODELS = Path(os.environ.get("DATA_DIR", "var")) / "models"
failures: list[str] = []


def line(name: str, **values: float | str) -> None:
    cells = "  ".join(
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )
    print(f"{name:<11} {cells}", flush=True)


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


async def timed(coro):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = await coro
    sync()
    return time.perf_counter() - started, result


async def latencies(call, n: int) -> float:  # type: ignore[no-untyped-def]
    """Median seconds of ``n`` lone requests, one after another."""
    times = []
    for _ in range(n):
        seconds, _ = await timed(call())
        times.append(seconds)
    return statistics.median(times)


async def chat() -> None:
    model = LocalTextGenerator(
        model="smollm2-135m-instruct", models_dir=MODELS, device=DEVICE, max_batch=32
    )
    load, _ = await timed(model.warm())
    turns = [Turn("user", "Write a short paragraph about the history of the bicycle.")]
    tokens = 16 if SMALL else 128

    async def answer() -> int:
        text = "".join([c async for c in model.stream(turns, max_tokens=tokens, temperature=0)])
        return model.count_tokens(text)

    await answer()
    first_token = []
    for _ in range(3):
        started = time.perf_counter()
        async for _chunk in model.stream(turns, max_tokens=tokens, temperature=0):
            first_token.append(time.perf_counter() - started)
            break
    lone, _ = await timed(answer())
    for concurrency in (1, 8) if SMALL else (1, 8, 32):
        seconds, counts = await timed(asyncio.gather(*(answer() for _ in range(concurrency))))
        line("chat", concurrency=str(concurrency), tok_per_s=sum(counts) / seconds,
             wall_s=seconds)
    line("chat", load_s=load, first_token_s=statistics.median(first_token),
         lone_answer_s=lone, dtype=str(model._model.dtype))


async def classify_like(name: str, call, requests: int) -> None:  # type: ignore[no-untyped-def]
    texts = [f"The service today was {'great' if i % 2 else 'slow'}, visit {i}." for i in range(requests)]
    await call([texts[0]])
    lone = await latencies(lambda: call([texts[0]]), 20)
    seconds, _ = await timed(asyncio.gather(*(call([t]) for t in texts)))
    line(name, lone_latency_ms=lone * 1000, concurrent=str(requests),
         req_per_s=requests / seconds)


async def sentiment() -> None:
    analyzer = BatchedSentimentAnalyzer(
        LocalSentimentAnalyzer(device=DEVICE), max_batch=256, max_wait_ms=2, max_queue=4096
    )
    load, _ = await timed(analyzer.warm())
    line("sentiment", load_s=load)
    await classify_like("sentiment", analyzer.analyze, 64 if SMALL else 1024)


async def embeddings() -> None:
    embedder = LocalEmbedder(device=DEVICE, max_batch=256, max_wait_ms=2, max_queue=4096)
    load, _ = await timed(embedder.warm())
    line("embeddings", load_s=load, dim=str(embedder.dim))
    await classify_like("embeddings", embedder.embed, 64 if SMALL else 1024)


async def images() -> None:
    generator = LocalImageGenerator(
        model=os.environ.get("IMAGE_MODEL") or "stabilityai/sd-turbo", device=DEVICE
    )
    load, _ = await timed(generator.warm())
    size = "128x128" if SMALL else "512x512"
    await generator.generate("a lighthouse at dusk", size=size, n=1)
    lone = await latencies(lambda: generator.generate("a red fox in snow", size=size, n=1), 3)
    count = 2 if SMALL else 8
    seconds, drawn = await timed(asyncio.gather(
        *(generator.generate(f"a watercolour of a cat, style {i}", size=size, n=1)
          for i in range(count))
    ))
    line("images", load_s=load, size=size, lone_image_s=lone,
         images_per_s=len(drawn) / seconds, batches=str(generator.batcher.batch_sizes[-3:]))


async def main() -> None:
    name = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (dry run)"
    print(f"gpu_check on {name}, torch {torch.__version__}", flush=True)
    for check in (chat, sentiment, embeddings, images):
        try:
            await check()
        except Exception as exc:  # one model failing must not hide the others' numbers
            failures.append(check.__name__)
            print(f"{check.__name__:<11} FAILED: {exc!r}", flush=True)
    if DEVICE == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
        print(f"peak GPU memory {peak:.2f} GiB", flush=True)
    print("gpu_check:", "failed: " + ", ".join(failures) if failures else "all models OK")
    raise SystemExit(1 if failures else 0)


asyncio.run(main())
EOF
