"""The packaged SmolLM2 loaded for real (once per session) and asked a question."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.providers.local import LocalTextGenerator, to_plain_prompt
from services.types import Turn

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def smollm2() -> LocalTextGenerator:
    # `make test` fetches the model into var/models first; this reuses it.
    return LocalTextGenerator(model="smollm2-135m-instruct", models_dir=ROOT / "var" / "models")


async def test_packaged_smollm2_answers_a_question(smollm2: LocalTextGenerator) -> None:
    turns = [
        Turn("system", "You are a helpful assistant."),
        Turn("user", "What is the capital of France? Answer in one word."),
    ]
    chunks = [c async for c in smollm2.stream(turns, max_tokens=12, temperature=0)]
    answer = "".join(chunks)
    assert len(chunks) > 1  # it streamed
    assert "paris" in answer.lower()


def test_context_window_and_token_count_come_from_the_model(smollm2: LocalTextGenerator) -> None:
    assert smollm2.context_window == 8192
    assert 0 < smollm2.count_tokens("Hello there, how are you?") < 12


def test_plain_prompt_for_models_without_a_chat_template() -> None:
    prompt = to_plain_prompt([Turn("user", "Hi"), Turn("assistant", "Hello"), Turn("user", "Bye")])
    assert prompt == "User: Hi\nAssistant: Hello\nUser: Bye\nAssistant:"
