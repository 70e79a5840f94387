"""/buy, /purchases and /recommend through the dispatcher, on an imported catalog."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.compose import App, build_app
from bot.settings import Settings
from handlers.types import Incoming
from services.container import GenerationConfig, Services
from services.recommend.importing import import_products, import_purchases
from services.recommend.rerank import LLMReranker
from services.recommend.service import Recommender
from storage.db import unit_of_work
from storage.models import Product, Purchase, User
from tests.fakes.embedder import FakeEmbedder
from tests.fakes.responder import CollectingResponder
from tests.fakes.text import FakeTextGenerator

_ids = itertools.count(1)

CATALOG = """id,title,description,category,price,url
m1,Wireless Mouse,Two buttons and a wheel,Computers,19.90,
m2,Wireless Mouse Pro,Eight buttons,Computers,49.00,
k1,Ergonomic Keyboard,Split layout,Computers,89.00,
p1,Mouse Pad,Cloth,Computers,5.00,
b1,Cookbook Volume One,Recipes,Books,25.00,
b2,Cookbook Volume Two,More recipes,Books,25.00,
g1,Garden Hose,Twenty metres,Garden,30.00,
"""
# Mouse buyers go on to the pad; cookbook one leads to two; the hose sells most.
PURCHASES = "platform,user_id,product_id,time\n" + "".join(
    f"test,u{u},{item},2025-01-0{day}T10:00:00Z\n"
    for u, items in enumerate(
        [["m1", "p1"]] * 3 + [["b1", "b2"]] * 2 + [["g1"]] * 5 + [["k1", "g1"]]
    )
    for day, item in enumerate(items, start=1)
)


@pytest.fixture
async def shop_app(
    migrated: Settings, fake_text: FakeTextGenerator, tmp_path: Path
) -> AsyncIterator[App]:
    embedder = FakeEmbedder()
    services = Services(
        text=fake_text,
        generation=GenerationConfig(system_prompt="You are a test.", max_tokens=64, temperature=0),
        embeddings=embedder,
        recommendations=Recommender(embedder, rebuild_every=0, min_similarity=0.5),
    )
    built = build_app(migrated, services=services)
    (tmp_path / "catalog.csv").write_text(CATALOG)
    (tmp_path / "purchases.csv").write_text(PURCHASES)
    products = await import_products(
        tmp_path / "catalog.csv", sessions=built.sessions, embedder=embedder
    )
    bought = await import_purchases(tmp_path / "purchases.csv", sessions=built.sessions)
    assert (products.imported, bought.imported, products.errors, bought.errors) == (7, 17, [], [])
    yield built
    await built.close()


async def send(
    app: App, text: str = "", *, user: str = "ada", action: str | None = None
) -> CollectingResponder:
    responder = CollectingResponder()
    incoming = Incoming(
        platform="test",
        event_id=f"shop-{next(_ids)}",
        chat_id=f"chat-{user}",
        user_id=user,
        text=text,
        action=action,
    )
    await app.dispatcher.dispatch(incoming, responder)
    return responder


async def say(app: App, text: str = "", *, user: str = "ada", action: str | None = None) -> str:
    return "\n".join((await send(app, text, user=user, action=action)).texts)


async def bought_by(app: App, user: str) -> list[str]:
    async with unit_of_work(app.sessions) as session:
        rows = await session.scalars(
            select(Product.external_id)
            .join(Purchase, Purchase.product_id == Product.id)
            .join(User, User.id == Purchase.user_id)
            .where(User.platform == "test", User.external_id == user)
            .order_by(Purchase.id)
        )
        return list(rows.all())


async def test_buy_by_id_and_by_unique_name_records_at_once(shop_app: App) -> None:
    assert "you bought **Ergonomic Keyboard**" in await say(shop_app, "/buy k1")
    assert "you bought **Garden Hose**" in await say(shop_app, "/buy garden hose")
    assert await bought_by(shop_app, "ada") == ["k1", "g1"]


async def test_buy_by_meaning_finds_words_in_any_order(shop_app: App) -> None:
    assert "you bought **Ergonomic Keyboard**" in await say(shop_app, "/buy keyboard ergonomic")


async def test_ambiguous_buy_asks_with_buttons_and_the_press_records(shop_app: App) -> None:
    asked = await send(shop_app, "/buy mouse")
    assert "Which one did you buy?" in asked.texts[0]
    buttons = asked.replies[-1].buttons
    labels = [b.label for b in buttons]
    assert labels[-1] == "None of these"
    assert set(labels[:-1]) == {"Wireless Mouse", "Wireless Mouse Pro", "Mouse Pad"}
    assert await bought_by(shop_app, "ada") == []

    pro = next(b for b in buttons if b.label == "Wireless Mouse Pro")
    assert "you bought **Wireless Mouse Pro**" in await say(shop_app, action=pro.data)
    assert await bought_by(shop_app, "ada") == ["m2"]
    assert "nothing recorded" in await say(shop_app, action=buttons[-1].data)
    assert "expired" in await say(shop_app, action="buy:999999")
    # Forged: digits int() refuses, and an id too large for the store.
    assert "expired" in await say(shop_app, action="buy:²")
    assert "expired" in await say(shop_app, action="buy:" + "9" * 30)


async def test_buy_of_something_unknown_says_so(shop_app: App) -> None:
    assert "I found nothing like “submarine”" in await say(shop_app, "/buy submarine")


async def test_purchases_lists_the_history_newest_first(shop_app: App) -> None:
    assert "haven't bought anything" in await say(shop_app, "/purchases")
    await say(shop_app, "/buy b1")
    await say(shop_app, "/buy g1")
    text = await say(shop_app, "/purchases")
    assert text.index("Garden Hose") < text.index("Cookbook Volume One")
    assert "(2, newest first)" in text
    imported = await say(shop_app, "/purchases", user="u10")
    assert "Ergonomic Keyboard — 2025-01-01" in imported


async def test_cold_start_user_gets_popular_products_said_as_such(shop_app: App) -> None:
    text = await say(shop_app, "/recommend 3")
    lines = text.splitlines()
    assert lines[0] == "You haven't bought anything yet, so here are our most popular products:"
    assert lines[1] == "1. **Garden Hose** — popular: bought 6 times"
    assert len(lines) == 4


async def test_recommend_explains_and_never_repeats_a_purchase(shop_app: App) -> None:
    await say(shop_app, "/buy m1")
    text = await say(shop_app, "/recommend 3")
    lines = text.splitlines()
    assert lines[0] == "**Recommended for you**"
    assert lines[1] == "1. **Mouse Pad** — because you bought Wireless Mouse"
    assert "**Wireless Mouse**" not in text
    await say(shop_app, "/buy p1")
    assert "Mouse Pad" not in await say(shop_app, "/recommend 6")


async def test_a_user_who_bought_a_whole_category_gets_the_others(shop_app: App) -> None:
    for product in ("m1", "m2", "k1", "p1"):  # every Computers product
        await say(shop_app, f"/buy {product}")
    lines = (await say(shop_app, "/recommend 5")).splitlines()[1:]
    assert len(lines) == 3  # all that is left: the two cookbooks and the hose
    assert {line.split("**")[1] for line in lines} == {
        "Cookbook Volume One",
        "Cookbook Volume Two",
        "Garden Hose",
    }
    for product in ("b1", "b2", "g1"):
        await say(shop_app, f"/buy {product}")
    assert "bought everything in the catalog" in await say(shop_app, "/recommend")


@pytest.mark.parametrize("args", ["0", "21", "two"])
async def test_recommend_with_a_bad_count_gets_usage(shop_app: App, args: str) -> None:
    assert (await say(shop_app, f"/recommend {args}")).startswith("Usage: `/recommend [n]`")


async def test_without_a_recommender_the_commands_say_so(app: App) -> None:
    assert await say(app, "/recommend") == "Recommendations are not set up on this bot."


async def test_a_configured_text_model_reranks_and_words_the_reasons(shop_app: App) -> None:
    await say(shop_app, "/buy m1")
    model = FakeTextGenerator(answer="2 | a cookbook for the desk\n1 | it sits under the mouse")
    shop_app.services.recommendations = Recommender(
        FakeEmbedder(), rebuild_every=0, reranker=LLMReranker(model)
    )
    lines = (await say(shop_app, "/recommend 2")).splitlines()[1:]
    prompt = model.calls[0][-1].text
    assert "- Wireless Mouse" in prompt and "1. Mouse Pad" in prompt
    assert lines[1] == "2. **Mouse Pad** — it sits under the mouse"
    assert lines[0].endswith("— a cookbook for the desk")

    model.fail = True  # the hybrid's own order and reasons stand
    lines = (await say(shop_app, "/recommend 2")).splitlines()[1:]
    assert lines[0] == "1. **Mouse Pad** — because you bought Wireless Mouse"


async def test_a_product_newer_than_the_index_counts_as_bought(
    migrated: Settings, tmp_path: Path
) -> None:
    # The index is rebuilt at most once a minute, but a user's own purchase must count at once.
    embedder = FakeEmbedder()
    services = Services(
        text=FakeTextGenerator(),
        generation=GenerationConfig(system_prompt="t", max_tokens=64, temperature=0),
        embeddings=embedder,
        recommendations=Recommender(embedder, rebuild_every=60, min_similarity=0.5),
    )
    app = build_app(migrated, services=services)
    try:
        (tmp_path / "catalog.csv").write_text(CATALOG)
        (tmp_path / "purchases.csv").write_text(PURCHASES)
        await import_products(tmp_path / "catalog.csv", sessions=app.sessions, embedder=embedder)
        await import_purchases(tmp_path / "purchases.csv", sessions=app.sessions)
        await say(app, "/recommend", user="early")  # builds the index
        (tmp_path / "new.csv").write_text("id,title\nz9,Zither Deluxe\n")
        await import_products(tmp_path / "new.csv", sessions=app.sessions, embedder=embedder)
        assert "Recorded" in await say(app, "/buy z9", user="new")
        text = await say(app, "/recommend", user="new")
    finally:
        await app.close()
    assert "haven't bought anything" not in text


async def test_buy_by_meaning_never_records_what_the_model_cannot_read(
    shop_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = shop_app.services.embeddings
    # As the packaged MiniLM does for most Chinese: the text is all unknown tokens, and its
    # vector is noise that can sit close to any product.
    monkeypatch.setattr(
        embedder,
        "readable",
        lambda text: not any("\u4e00" <= c <= "\u9fff" for c in text),
        raising=False,
    )
    assert "found nothing" in await say(shop_app, "/buy 冰箱 keyboard ergonomic")
    assert await bought_by(shop_app, "ada") == []
    assert "you bought **Ergonomic Keyboard**" in await say(shop_app, "/buy keyboard ergonomic")
