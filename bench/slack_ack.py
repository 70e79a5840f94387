"""Slack ack latency under slow generation, and duplicate replies under Slack's retries.

Runs the real endpoint (uvicorn on 127.0.0.1, slack-bolt, the dispatcher on SQLite) against the
fake Slack Web API. Usage, from the repository root:

    .venv/bin/python bench/slack_ack.py [--commands 500] [--in-flight 20] [--delay 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.compose import build_app
from bot.migrate import upgrade
from bot.platforms.slack import SlackPlatform
from bot.settings import Settings
from handlers.middleware import SORRY
from services.container import GenerationConfig, Services
from tests.fakes.slack_server import BOT_USER_ID, FakeSlackApi
from tests.fakes.text import FakeTextGenerator
from tests.platforms.slack_harness import BOT_TOKEN, SIGNING_SECRET, SlackHarness

GOAL_P99_MS = 300.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def ack_times(harness: SlackHarness, *, commands: int, in_flight: int) -> list[float]:
    """Milliseconds from sending each /gen to its ack; one channel each, so none waits on
    another's conversation lock."""
    slots = asyncio.Semaphore(in_flight)
    times: list[float] = []

    async def one(i: int) -> None:
        async with slots:
            started = time.perf_counter()
            sent = await harness.command("/gen", f"story {i}", channel_id=f"C{i:05d}")
            times.append((time.perf_counter() - started) * 1000)
            assert sent.status == 200, sent

    await asyncio.gather(*(one(i) for i in range(commands)))
    return times


async def deliver_with_retries(harness: SlackHarness, *, events: int, copies: int) -> bool:
    """Each mention sent ``copies`` times at once, the extra ones as Slack's retries."""

    async def one(i: int) -> list[int]:
        event = {"type": "app_mention", "user": "U0ADA", "channel": "CRETRY", "ts": f"{i}.1"}
        event["text"] = f"<@{BOT_USER_ID}> hello {i}"
        sends = [harness.event(event, event_id=f"EvR{i}", retry=n or None) for n in range(copies)]
        return [s.status for s in await asyncio.gather(*sends)]

    statuses = await asyncio.gather(*(one(i) for i in range(events)))
    return all(s == 200 for batch in statuses for s in batch)


def _shown(call: dict[str, object]) -> str:
    return str(call.get("text") or call.get("markdown_text") or "")


def replies_per_target(api: FakeSlackApi) -> tuple[Counter[str], Counter[str]]:
    """Answers and apologies per channel (slash commands) or per thread (mentions)."""
    answers: Counter[str] = Counter()
    apologies: Counter[str] = Counter()
    for call in api.calls_to("chat.postMessage", "chat.startStream", "chat.postEphemeral"):
        target = str(call.get("thread_ts") or call["channel"])
        (apologies if _shown(call).startswith(SORRY[:20]) else answers)[target] += 1
    return answers, apologies


def report(times: list[float], api: FakeSlackApi, *, commands: int, delay: float) -> None:
    p50, p99 = statistics.median(times), percentile(times, 0.99)
    print(f"{commands} slash commands (/gen), generation {delay:.1f} s each")
    print(f"  ack p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   max {max(times):6.1f} ms")
    verdict = "met" if p99 < GOAL_P99_MS else "MISSED"
    print(f"  goal p99 < {GOAL_P99_MS:.0f} ms: {verdict}")
    answers, apologies = replies_per_target(api)
    targets = [f"C{c:05d}" for c in range(commands)]
    answered = sum(1 for t in targets if answers[t])
    sorry = sum(1 for t in targets if apologies[t] and not answers[t])
    print(f"  answered {answered}/{commands}, apologised instead {sorry}")


async def run(args: argparse.Namespace, settings: Settings) -> None:
    text = FakeTextGenerator(delay=args.delay)
    generation = GenerationConfig(system_prompt="bench", max_tokens=64, temperature=0)
    app = build_app(settings, services=Services(text=text, generation=generation))
    api = FakeSlackApi(token=BOT_TOKEN)
    await api.start()
    platform = SlackPlatform(
        bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, api_url=api.base_url
    )
    harness = SlackHarness(platform)
    await harness.start(app.dispatcher.dispatch)
    try:
        times = await ack_times(harness, commands=args.commands, in_flight=args.in_flight)
        await platform.drain()
        report(times, api, commands=args.commands, delay=args.delay)
        text.delay = 0.2
        acked = await deliver_with_retries(harness, events=args.events, copies=3)
        await platform.drain()
    finally:
        await harness.stop()
        await api.stop()
        await app.close()
    answers, apologies = replies_per_target(api)
    counts = answers + apologies
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    answered = sum(1 for i in range(args.events) if answers[f"{i}.1"])
    print(f"{args.events} mentions delivered 3 times each (X-Slack-Retry-Num 1 and 2, at once)")
    print(f"  all acked 200: {'yes' if acked else 'NO'}   answered {answered}/{args.events}")
    print(f"duplicate replies (both phases): {duplicates}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--commands", type=int, default=500)
    parser.add_argument("--in-flight", type=int, default=20, help="concurrent requests")
    parser.add_argument("--delay", type=float, default=5.0, help="seconds per generation")
    parser.add_argument("--events", type=int, default=200, help="mentions in the retry phase")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), _env_file=None)  # type: ignore[call-arg]
        upgrade(settings.db_url)  # alembic runs its own event loop, so before ours
        asyncio.run(run(args, settings))


if __name__ == "__main__":
    main()
