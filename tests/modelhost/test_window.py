"""The host fits a conversation into the window with real tokens, whatever the bot estimated."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import httpx
import openai
import pytest

from services.modelhost.server import ModelHost, build_model_app
from services.modelhost.window import PromptTooLong, fit_prompt
from services.providers.common import estimate_tokens
from services.providers.local import LocalTextGenerator
from services.types import Role, Turn
from tests.fakes.text import FakeTextGenerator
from tests.modelhost.conftest import serving

WINDOW = 1024
REPLY = 8
RUSSIAN = "Привет, как дела? Расскажи мне о погоде в Москве сегодня. " * 3


class Narrow:
    """SmolLM2 with a small window, recording what reaches it: long prompts stay cheap."""

    name = "narrow"
    context_window = WINDOW

    def __init__(self, model: LocalTextGenerator) -> None:
        self.model = model
        self.calls: list[list[Turn]] = []

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)

    def stream(
        self, turns: Sequence[Turn], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str]:
        self.calls.append(list(turns))
        return self.model.stream(turns, max_tokens=max_tokens, temperature=temperature)


async def test_a_long_russian_conversation_is_trimmed_and_answered(
    smollm2: LocalTextGenerator,
) -> None:
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"Ход {i}. {RUSSIAN}"}
        for i in range(12)
    ]
    messages = [
        {"role": "system", "content": "Отвечай кратко."},
        *history,
        {"role": "user", "content": "И что дальше?"},
    ]
    # What the bot sends: by its chars/3.5 estimate all of it fits, in real tokens it does not.
    assert sum(estimate_tokens(m["content"]) + 8 for m in messages) + REPLY < WINDOW
    model = Narrow(smollm2)
    async with serving(build_model_app(ModelHost(text=model))) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        answer = await client.chat.completions.create(
            model="any",
            messages=messages,  # type: ignore[arg-type]
            max_tokens=REPLY,
            temperature=0,
        )
    assert answer.choices[0].message.content
    assert answer.usage is not None and answer.usage.prompt_tokens + REPLY <= WINDOW
    sent = [turn.text for turn in model.calls[0]]
    assert sent[0] == "Отвечай кратко." and sent[-1] == "И что дальше?"
    assert sent[-2] == history[-1]["content"]
    assert all(not text.startswith("Ход 0.") for text in sent)
    assert model.calls[0][1].role == "user"


def turns(*texts: str, system: int = 1) -> list[Turn]:
    """``system`` system turns, then user and assistant turns in turn, the last a user's."""
    rest = len(texts) - system
    roles: list[Role] = ["system"] * system
    roles += ["user" if (rest - i) % 2 else "assistant" for i in range(rest)]
    return [Turn(role, text) for role, text in zip(roles, texts, strict=True)]


@pytest.mark.parametrize("system", [0, 1, 2])
def test_the_oldest_turns_go_first_and_system_turns_stay(system: int) -> None:
    model = FakeTextGenerator(context_window=100)  # one token a word, plus one
    texts = [f"s{i}" for i in range(system)] + [f"turn {i} " + "w " * 8 for i in range(9)]
    fitted, prompt_tokens = fit_prompt(model, turns(*texts, system=system), max_tokens=20)
    sent = [turn.text for turn in fitted]
    assert sent[:system] == texts[:system] and sent[-1] == texts[-1]
    assert sent[system:] == texts[-len(sent) + system :]  # a run of the newest turns
    assert texts[system] not in sent and fitted[system].role == "user"
    assert prompt_tokens == sum(model.count_tokens(t) + 8 for t in sent) <= 100 - 20


def test_a_conversation_that_fits_is_sent_whole() -> None:
    model = FakeTextGenerator(context_window=100)
    conversation = turns("be brief", "hi", "hello", "how are you?")
    assert fit_prompt(model, conversation, max_tokens=20) == (conversation, 3 + 2 + 2 + 4 + 4 * 8)


@pytest.mark.parametrize(
    "conversation",
    [turns("be brief", "old", "older", "w " * 90), turns("w " * 90), turns("w " * 90, system=0)],
)
def test_too_long_even_without_history_is_refused(conversation: list[Turn]) -> None:
    with pytest.raises(PromptTooLong, match="exceed the context window of 100"):
        fit_prompt(FakeTextGenerator(context_window=100), conversation, max_tokens=20)


async def test_too_long_even_without_history_is_a_context_length_400() -> None:
    host = ModelHost(text=FakeTextGenerator(context_window=100))
    body = {"messages": [{"role": "user", "content": "w " * 90}], "max_tokens": 20}
    async with serving(build_model_app(host)) as url, httpx.AsyncClient() as http:
        response = await http.post(f"{url}/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"
