"""Micro-batching vs one request at a time, same model, same process, measured side by side.

    .venv/bin/python bench/batching.py [--rounds 5] [--chat-rounds 2] [--threads 1]

Sentiment (the offline minilm-sst2 classifier) and embeddings (the packaged MiniLM): 64
concurrent single-text requests. Chat (the packaged SmolLM2): 8 concurrent requests, greedy,
in generated tokens per second. "One at a time" is the same model behind a batcher whose
batches hold one request, so the only difference is the batching. Goals: >=4x and >=3x.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.modelhost.batcher import MicroBatcher  # noqa: E402
from services.providers.local import LocalTextGenerator  # noqa: E402
from services.providers.local_embeddings import LocalEmbedder  # noqa: E402
from services.providers.local_sentiment import LocalSentimentAnalyzer  # noqa: E402
from services.types import Turn  # noqa: E402

SENTENCES = [
    "The film was a delight from start to finish.",
    "I waited an hour and the food was cold.",
    "An honest, moving story with wonderful acting.",
    "The plot makes no sense and the jokes fall flat.",
    "Support answered quickly and fixed my problem.",
    "Never again: rude staff and a dirty room.",
    "A pleasant surprise, better than the trailer suggested.",
    "Two hours of my life I will not get back.",
]
# Open questions, as chat mostly is: every answer runs to the token limit, so the batch stays
# full and both sides generate the same tokens.
QUESTIONS = [
    "Write a short story about a robot who learns to paint.",
    "Explain how a bicycle works.",
    "Describe a walk through a forest in autumn.",
    "Give me five tips for learning a new language.",
    "Explain photosynthesis to a child.",
    "Write a letter to a friend about your holiday by the sea.",
    "Describe how bread is made, step by step.",
    "Explain why regular exercise is good for your health.",
]


async def alternate(
    first: Callable[[], Awaitable[object]], second: Callable[[], Awaitable[object]], rounds: int
) -> tuple[float, float]:
    """Best wall time of each side over ``rounds`` alternating runs: on a shared machine the
    least disturbed run is the one that measures the code, and alternating exposes both
    sides to the same background load."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for side, work in enumerate((first, second)):
            started = time.perf_counter()
            await work()
            times[side].append(time.perf_counter() - started)
    return min(times[0]), min(times[1])


async def concurrent(batcher: MicroBatcher[str, object], texts: list[str]) -> None:
    await asyncio.gather(*(batcher.submit(text) for text in texts))


async def bench_classifier(
    name: str, fn: Callable[[list[str]], list[object]], rounds: int
) -> float:
    texts = [f"{SENTENCES[i % len(SENTENCES)]} ({i})" for i in range(64)]
    batched = MicroBatcher(fn, name=f"{name}-batched", max_batch=64, max_wait_ms=5)
    single = MicroBatcher(fn, name=f"{name}-single", max_batch=1, max_wait_ms=0)
    await concurrent(batched, texts)  # warm-up: loads the model, fills caches
    await concurrent(single, texts[:8])
    t_batched, t_single = await alternate(
        lambda: concurrent(batched, texts), lambda: concurrent(single, texts), rounds
    )
    ratio = t_single / t_batched
    print(
        f"{name:<11} 64 concurrent requests: micro-batched {64 / t_batched:8.1f} req/s, "
        f"one at a time {64 / t_single:8.1f} req/s -> {ratio:.1f}x (goal >= 4x)"
    )
    return ratio


async def bench_chat(rounds: int, max_tokens: int) -> float:
    model = LocalTextGenerator(
        model="smollm2-135m-instruct",
        models_dir=ROOT / "var" / "models",
        device="cpu",
        max_batch=8,
        max_wait_ms=20,
    )
    single = LocalTextGenerator(
        model="smollm2-135m-instruct",
        models_dir=ROOT / "var" / "models",
        device="cpu",
        max_batch=1,
        max_wait_ms=0,
    )
    await model.warm()
    # The same loaded model and tokenizers behind a batcher of one: only batching differs.
    single._model, single._tokenizer = model._model, model._tokenizer
    single._worker_tokenizer, single._config = model._worker_tokenizer, model._config

    async def answer(generator: LocalTextGenerator, question: str) -> int:
        turns = [Turn("user", question)]
        chunks = generator.stream(turns, max_tokens=max_tokens, temperature=0)
        return generator.count_tokens("".join([c async for c in chunks]))

    generated: dict[int, int] = {}

    async def run(generator: LocalTextGenerator) -> None:
        answers = await asyncio.gather(*(answer(generator, q) for q in QUESTIONS))
        generated[generator.batcher.max_batch] = sum(answers)

    await run(model)  # warm-up
    t_batched, t_single = await alternate(lambda: run(model), lambda: run(single), rounds)
    # Each side's own token count (greedy decoding makes them equal, as the tests check).
    rate_b, rate_s = generated[8] / t_batched, generated[1] / t_single
    tokens = generated[8]
    print(
        f"chat        8 concurrent requests, {tokens} tokens: batched {rate_b:6.1f} "
        f"tok/s, sequential {rate_s:6.1f} tok/s -> {rate_b / rate_s:.1f}x (goal >= 3x)"
    )
    return rate_b / rate_s


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chat-rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    # Both sides get the same threads; on a shared CPU one thread measures far more steadily.
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s); best of {args.rounds} "
        f"(chat: {args.chat_rounds}) alternating rounds"
    )
    sentiment = LocalSentimentAnalyzer(device="cpu", batch_size=64)
    await bench_classifier("sentiment", sentiment.predict, args.rounds)  # type: ignore[arg-type]
    embedder = LocalEmbedder(device="cpu")
    await bench_classifier("embeddings", embedder._encode_rows, args.rounds)  # type: ignore[arg-type]
    await bench_chat(args.chat_rounds, args.max_tokens)


if __name__ == "__main__":
    asyncio.run(main())
