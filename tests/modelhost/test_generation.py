"""Batched generation on the packaged SmolLM2: concurrent requests share one left-padded
``generate`` call, and each still gets exactly the text it would have got alone."""

from __future__ import annotations

import asyncio

from services.providers.local import LocalTextGenerator
from services.types import Turn

QUESTIONS = [
    "What is the capital of France?",
    "Name a colour.",
    "Write one short sentence about the sea and the wind over it.",
]


async def ask(model: LocalTextGenerator, text: str, *, max_tokens: int = 8, t: float = 0.0) -> str:
    turns = [Turn("user", text)]
    return "".join([c async for c in model.stream(turns, max_tokens=max_tokens, temperature=t)])


async def test_batched_rows_match_their_unbatched_answers(smollm2: LocalTextGenerator) -> None:
    alone = [await ask(smollm2, q) for q in QUESTIONS]
    together = await asyncio.gather(*(ask(smollm2, q) for q in QUESTIONS))
    assert smollm2.batcher.batch_sizes[-1] == 3
    assert together == alone
    assert "Paris" in together[0]


async def test_each_row_keeps_its_own_token_limit_and_sampling(
    smollm2: LocalTextGenerator,
) -> None:
    greedy_alone = await ask(smollm2, QUESTIONS[2], max_tokens=10)
    short, sampled, greedy = await asyncio.gather(
        ask(smollm2, QUESTIONS[0], max_tokens=2),
        ask(smollm2, QUESTIONS[1], max_tokens=10, t=0.8),
        ask(smollm2, QUESTIONS[2], max_tokens=10),
    )
    assert smollm2.batcher.batch_sizes[-1] == 3
    assert 0 < smollm2.count_tokens(short) <= 3
    assert sampled.strip()
    assert greedy == greedy_alone


async def test_a_reader_that_leaves_early_does_not_stop_the_others(
    smollm2: LocalTextGenerator,
) -> None:
    async def first_piece() -> str:
        chunks = smollm2.stream([Turn("user", QUESTIONS[2])], max_tokens=10, temperature=0)
        async for chunk in chunks:
            await chunks.aclose()  # type: ignore[attr-defined]
            return chunk
        return ""

    piece, full = await asyncio.gather(first_piece(), ask(smollm2, QUESTIONS[0]))
    assert piece and "Paris" in full


async def test_a_reply_cut_inside_a_character_does_not_end_in_a_replacement_mark(
    smollm2: LocalTextGenerator,
) -> None:
    # Chinese characters take several byte-level tokens: some limits cut one in half.
    replies = await asyncio.gather(
        *(ask(smollm2, "写一首关于秋天的短诗", max_tokens=n) for n in range(1, 13))
    )
    assert not any(reply.endswith("\ufffd") for reply in replies)
    assert any(reply.strip() for reply in replies)
