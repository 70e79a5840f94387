"""The model server vs the same models in-process, under the same load, side by side.

    .venv/bin/python bench/model_server.py [--rounds 3] [--threads 1]

Starts `switchboard serve-models` in a subprocess on 127.0.0.1, then runs one mixed load
(8 concurrent chats, 64 concurrent sentiment requests, 64 concurrent embedding requests, all
at once) first against in-process services, then against the server through MODEL_HOST_URL
(the openai SDK and /classify), alternating. Goal: the server at most 10% slower.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import httpx
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.compose import build_services  # noqa: E402
from bot.model_services import warm  # noqa: E402
from bot.settings import Settings  # noqa: E402
from services.container import Services  # noqa: E402
from services.types import Turn  # noqa: E402

QUESTIONS = [
    "What is the capital of France?",
    "Give me three tips for sleeping better.",
    "Explain what a CPU does in simple words.",
    "Write a short poem about the sea.",
    "How do I boil an egg?",
    "What is photosynthesis?",
    "Suggest a name for a grey cat.",
    "Why is the sky blue?",
]
SERVER_LOG = Path(tempfile.gettempdir()) / "switchboard-bench-serve-models.log"
TEXTS = [f"Review number {i}: the service was {'great' if i % 2 else 'awful'}." for i in range(64)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def settings(max_tokens: int, url: str | None = None) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=ROOT / "var",
        model_device="cpu",
        model_host_url=url,
        text_max_tokens=max_tokens,
        text_temperature=0,
    )


async def load(services: Services, max_tokens: int) -> dict[str, float]:
    """One round of the mixed load; the wall time of each part and of the whole."""
    assert services.sentiment is not None and services.embeddings is not None
    sentiment, embeddings = services.sentiment, services.embeddings

    async def timed(name: str, work: asyncio.Future[object]) -> tuple[str, float]:
        started = time.perf_counter()
        await work
        return name, time.perf_counter() - started

    async def chat(question: str) -> str:
        chunks = services.text.stream(
            [Turn("user", question)], max_tokens=max_tokens, temperature=0
        )
        return "".join([c async for c in chunks])

    started = time.perf_counter()
    parts = await asyncio.gather(
        timed("chat", asyncio.gather(*(chat(q) for q in QUESTIONS))),
        timed("sentiment", asyncio.gather(*(sentiment.analyze([t]) for t in TEXTS))),
        timed("embeddings", asyncio.gather(*(embeddings.embed([t]) for t in TEXTS))),
    )
    return {**dict(parts), "total": time.perf_counter() - started}


def start_server(port: int, threads: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "DATA_DIR": str(ROOT / "var"),
        "MODEL_DEVICE": "cpu",
        "MODEL_HOST_URL": "",
        "LOG_LEVEL": "WARNING",
        # No diffusion weights offline: fail the image model's warm-up at once, not after
        # the hub client's retries.
        "HF_HUB_OFFLINE": "1",
    }
    # The child keeps its own copy of the file descriptor.
    with SERVER_LOG.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "serve-models", "--port", str(port)],
            cwd=tempfile.gettempdir(),
            env={**env, "PYTHONPATH": str(ROOT)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def wait_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            if server.poll() is not None:
                raise SystemExit(f"serve-models exited early; see {SERVER_LOG}")
            try:
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    raise SystemExit("serve-models did not start")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(port, args.threads)
    try:
        local = build_services(settings(args.max_tokens))
        # Images are not part of the load (the offline machine has no diffusion weights).
        await warm(replace(local, images=None))
        await wait_ready(url, server)
        remote = build_services(settings(args.max_tokens, url))
        await load(local, args.max_tokens)  # warm-up both sides
        await load(remote, args.max_tokens)
        rounds: dict[str, list[dict[str, float]]] = {"in-process": [], "server": []}
        for _ in range(args.rounds):  # alternate, so background load hits both alike
            rounds["in-process"].append(await load(local, args.max_tokens))
            rounds["server"].append(await load(remote, args.max_tokens))
    finally:
        server.terminate()
        server.wait(timeout=30)
    # Best of the alternating rounds: the least disturbed run on a shared machine.
    print(
        f"torch {torch.__version__}, {args.threads} thread(s) each side, "
        f"best of {args.rounds} alternating rounds, seconds"
    )
    print(f"{'part':<11}{'in-process':>11}{'server':>9}{'ratio':>8}")
    for part in ("chat", "sentiment", "embeddings", "total"):
        inproc = min(r[part] for r in rounds["in-process"])
        served = min(r[part] for r in rounds["server"])
        print(f"{part:<11}{inproc:>11.2f}{served:>9.2f}{served / inproc:>7.2f}x")
    total = min(r["total"] for r in rounds["server"]) / min(
        r["total"] for r in rounds["in-process"]
    )
    print(f"model server vs in-process, whole load: {total:.2f}x the time (goal <= 1.10x)")


if __name__ == "__main__":
    asyncio.run(main())
