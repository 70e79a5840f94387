"""Intent routing of free-form text, on a labelled set written for it, and delegation by name."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bot.compose import App, build_app
from bot.settings import Settings
from handlers import basic, chat, intents, qa
from handlers.context import Context
from handlers.intents import IntentClassifier, chinese_action, looks_like_question
from handlers.router import Router
from handlers.types import Incoming
from services.container import GenerationConfig, Services
from services.providers.local_embeddings import LocalEmbedder
from tests.fakes.responder import CollectingResponder
from tests.fakes.text import FakeTextGenerator

EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "routing_examples.csv"
# Chinese: decided by the message's form and by whole-message patterns, which MiniLM (it reads
# Chinese as unknown tokens) cannot second-guess; so every example must come out right.
EXAMPLES_ZH = Path(__file__).resolve().parent / "routing_examples_zh.csv"


@pytest.fixture(scope="module")
def minilm() -> LocalEmbedder:
    torch.set_num_threads(1)
    return LocalEmbedder(device="cpu", max_wait_ms=1)


def examples(path: Path = EXAMPLES) -> list[tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [(row["text"], row["intent"]) for row in csv.DictReader(handle)]


async def test_labelled_examples_are_routed_accurately(minilm: LocalEmbedder) -> None:
    labelled = examples()
    assert len(labelled) >= 100 and len(Counter(i for _, i in labelled)) == 5
    classifier = IntentClassifier()
    predicted = [(await classifier.classify(text, minilm)).name for text, _ in labelled]
    wrong = [(t, i, p) for (t, i), p in zip(labelled, predicted, strict=True) if i != p]
    assert len(wrong) <= 0.08 * len(labelled), wrong


async def test_chinese_examples_are_routed_exactly(minilm: LocalEmbedder) -> None:
    labelled = examples(EXAMPLES_ZH)
    assert len(labelled) >= 50 and len(Counter(i for _, i in labelled)) == 5
    classifier = IntentClassifier()
    predicted = [(await classifier.classify(text, minilm)).name for text, _ in labelled]
    wrong = [(t, i, p) for (t, i), p in zip(labelled, predicted, strict=True) if i != p]
    assert wrong == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("帮我画一只猫", ("draw", "猫")),
        ("你能帮我画一只狗吗？", ("draw", "狗")),
        ("生成一张猫的图", ("draw", "猫")),
        ("生成一张风景图", ("draw", "风景图")),
        ("帮我生成一张海边日落的图片", ("draw", "海边日落")),
        ("我买了一个台灯", ("buy", "台灯")),
        ("我刚买了一台笔记本电脑", ("buy", "笔记本电脑")),
        ("我买了两本书", ("buy", "书")),
        # A product name that starts with a number or a measure word keeps it.
        ("我买了一加手机", ("buy", "一加手机")),
        ("我买了部落冲突的月卡", ("buy", "部落冲突的月卡")),
        ("我昨天买了ＰＳ５。", ("buy", "ＰＳ５")),
        ("给我推荐点东西", ("recommend", "")),
        ("买什么好", ("recommend", "")),
        ("这幅画很好看", None),
        ("画家很穷", None),
        ("帮我生成一份报告", None),
        ("我买了一个台灯，但是坏了", None),
        ("我买了什么", None),
        ("谢谢你的推荐", None),
        ("推荐算法是什么", None),
        ("draw a cat", None),
    ],
)
def test_chinese_actions_and_their_arguments(text: str, expected: tuple[str, str] | None) -> None:
    assert chinese_action(text) == expected


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("怎么退货？", True),
        ("怎么退货?", True),
        ("可以开发票吗", True),
        ("可以开发票吗？", True),
        ("我的订单呢", True),
        ("你在哪呢", True),
        ("请问几点开门", True),
        ("多少钱", True),
        ("我在吃饭呢", False),
        ("还早呢", False),
        ("什么都不想做", False),
        ("哪怕下雨我也去", False),
        ("几点开门", True),
        ("退货要多久呢", True),
        ("几乎每天都下雨", False),  # "almost every day": 几 is not always a question
        ("几个朋友来了", False),
        ("哪里都一样", False),
        ("怎么都行", False),
        ("我也是呢", False),
        ("你好", False),
        ("谢谢", False),
        ("讲个笑话", False),
    ],
)
def test_chinese_questions_read_as_questions(text: str, question: bool) -> None:
    assert looks_like_question(text) is question


async def test_without_embeddings_chinese_actions_are_chat_too() -> None:
    classifier = IntentClassifier()
    assert (await classifier.classify("帮我画一只猫", None)).name == "chat"
    assert (await classifier.classify("怎么退货？", None)).name == "question"


async def test_without_embeddings_the_surface_form_decides() -> None:
    classifier = IntentClassifier()
    assert (await classifier.classify("Where is my parcel?", None)).name == "question"
    assert (await classifier.classify("draw a cat", None)).name == "chat"


@pytest.fixture
def recorded() -> list[tuple[str, str]]:
    return []


def router_with(recorded: list[tuple[str, str]], *names: str) -> Router:
    router = Router()
    basic.register(router)
    chat.register(router)
    for name in names:

        async def handler(ctx: Context, args: str, name: str = name) -> None:
            recorded.append((name, args))
            await ctx.reply_text(f"{name} ran")

        router.command(name, summary=name, args="<what>", args_required=name != "recommend")(
            handler
        )
    qa.register(router)
    intents.register(router)
    return router


@pytest.fixture
def make(
    migrated: Settings, minilm: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> Iterator[object]:
    apps: list[App] = []

    def build(router: Router, text: FakeTextGenerator) -> App:
        monkeypatch.setattr("bot.compose.build_router", lambda: router)
        services = Services(
            text=text,
            generation=GenerationConfig(system_prompt="Test.", max_tokens=32, temperature=0),
            embeddings=minilm,
        )
        apps.append(build_app(migrated, services=services))
        return apps[-1]

    yield build


async def say(app: App, text: str) -> list[str]:
    responder = CollectingResponder()
    incoming = Incoming("test", f"e-{text}", "chat", "user", text)
    await app.dispatcher.dispatch(incoming, responder)
    return responder.texts


async def test_features_are_reached_by_command_name(make, recorded, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    async def stocked(ctx: Context) -> bool:
        return True

    monkeypatch.setattr(intents, "_catalog_has_products", stocked)
    app = make(router_with(recorded, "image", "buy", "recommend"), FakeTextGenerator())
    try:
        assert await say(app, "please draw me a picture of a red fox") == ["image ran"]
        assert await say(app, "I just bought Elden Ring") == ["buy ran"]
        assert await say(app, "what should I get next?") == ["recommend ran"]
        # Commands always win over intents.
        assert await say(app, "/image a blue whale") == ["image ran"]
    finally:
        await app.close()
    assert recorded == [
        ("image", "red fox"),
        ("buy", "Elden Ring"),
        ("recommend", ""),
        ("image", "a blue whale"),
    ]


async def test_chinese_requests_reach_features_by_command_name(make, recorded, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    async def stocked(ctx: Context) -> bool:
        return True

    monkeypatch.setattr(intents, "_catalog_has_products", stocked)
    text = FakeTextGenerator(answer="Chatting.")
    app = make(router_with(recorded, "image", "buy", "recommend"), text)
    try:
        assert await say(app, "帮我画一只猫") == ["image ran"]
        assert await say(app, "我买了一个台灯") == ["buy ran"]
        assert await say(app, "我应该买什么") == ["recommend ran"]
        assert await say(app, "这幅画很好看") == ["Chatting."]
        assert await say(app, "你好") == ["Chatting."]
        # Commands always win over intents, and pass their arguments on as typed.
        assert await say(app, "／image 帮我画一只猫") == ["image ran"]
    finally:
        await app.close()
    assert recorded == [
        ("image", "猫"),
        ("buy", "台灯"),
        ("recommend", ""),
        ("image", "帮我画一只猫"),
    ]


async def test_missing_features_fall_back_to_chat(make, recorded) -> None:  # type: ignore[no-untyped-def]
    text = FakeTextGenerator(answer="Chatting instead.")
    app = make(router_with(recorded, "buy"), text)
    try:
        assert await say(app, "draw a lighthouse") == ["Chatting instead."]
        # Shopping without a catalog: a purchase story is chat (or a question), not /buy.
        assert await say(app, "I just bought Elden Ring") == ["Chatting instead."]
        # No embeddings-backed KB here: questions are chat too.
        assert await say(app, "How do I reset my password?") == ["Chatting instead."]
    finally:
        await app.close()
    assert recorded == []


async def test_an_embedder_without_meaning_is_not_trusted() -> None:
    # Hashed bags of words cannot tell "draw a dragon" from "tell me about dragons".
    from tests.fakes.kb_embedder import HashingEmbedder

    classifier = IntentClassifier()
    assert (await classifier.classify("please draw a dragon", HashingEmbedder())).name == "chat"
    assert (await classifier.classify("Where is my parcel?", HashingEmbedder())).name == "question"


async def test_an_embeddings_outage_leaves_chat_working(  # type: ignore[no-untyped-def]
    migrated, recorded, monkeypatch
) -> None:
    from services.kb.knowledge import KnowledgeBase
    from services.types import ProviderError

    class Down:
        name = "local:down"

        async def embed(self, texts: object) -> object:
            raise ProviderError("The embedding service is unavailable.", detail="connect refused")

    monkeypatch.setattr("bot.compose.build_router", lambda: router_with(recorded, "image"))
    services = Services(
        text=FakeTextGenerator(answer="Hello!"),
        generation=GenerationConfig(system_prompt="Test.", max_tokens=32, temperature=0),
        embeddings=Down(),  # type: ignore[arg-type]
        kb=KnowledgeBase(Down()),  # type: ignore[arg-type]
    )
    app = build_app(migrated, services=services)
    try:
        assert await say(app, "hello there, nice to meet you") == ["Hello!"]
        assert await say(app, "please draw me a red fox") == ["Hello!"]
    finally:
        await app.close()
    assert recorded == []


def test_a_purchase_drops_a_final_particle_and_long_text_is_no_action() -> None:
    assert chinese_action("我买了一个台灯了") == ("buy", "台灯")
    # A long run the patterns would backtrack over is not a request at all.
    assert chinese_action("帮我画" + "~" * 8000 + "x") is None
    assert chinese_action("我买了" + "." * 8000) is None
