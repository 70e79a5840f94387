"""/buy, /purchases and /recommend: purchase history and explained recommendations."""

from __future__ import annotations

import re

from handlers.context import Context
from handlers.router import Router
from handlers.types import Button, Reply
from services.recommend.service import Recommender
from storage import catalog as repo

PREFIX = "buy"
NONE = "none"
DEFAULT_COUNT = 5
MAX_COUNT = 20
HISTORY_SHOWN = 20
UNAVAILABLE = "Recommendations are not set up on this bot."
RECOMMEND_USAGE = f"Usage: `/recommend [n]` — n from 1 to {MAX_COUNT} (default {DEFAULT_COUNT})."
# Characters that would start Markdown emphasis or links inside a product title.
_MARKUP = str.maketrans({"*": "∗", "`": "'", "[": "(", "]": ")", "_": " "})


def plain(title: str) -> str:
    return title.translate(_MARKUP)


def _label(title: str) -> str:
    return title if len(title) <= 60 else title[:59] + "…"


async def _recommender(ctx: Context) -> Recommender | None:
    recommender = ctx.services.recommendations
    if recommender is None:
        await ctx.reply_text(UNAVAILABLE)
    return recommender


async def _record(ctx: Context, product_id: int, title: str) -> None:
    await repo.record_purchase(ctx.session, user_id=ctx.user.id, product_id=product_id)
    await ctx.reply_text(
        f"Recorded: you bought **{plain(title)}**. /recommend suggests what's next."
    )


def parse_count(args: str) -> int | None:
    if not args.strip():
        return DEFAULT_COUNT
    try:
        count = int(args.strip())
    except ValueError:
        return None
    return count if 1 <= count <= MAX_COUNT else None


def register(router: Router) -> None:
    @router.command(
        "buy",
        summary="record a purchase: a product's id, name or description",
        args="<product>",
        args_required=True,
    )
    async def buy(ctx: Context, args: str) -> None:
        recommender = await _recommender(ctx)
        if recommender is None:
            return
        match = await recommender.find(ctx.session, args)
        if not match.products:
            await ctx.reply_text(
                f"I found nothing like “{plain(args)}” in the catalog. "
                "Try the product's id or a word from its name."
            )
        elif match.sure:
            await _record(ctx, match.products[0].id, match.products[0].title)
        else:
            buttons = tuple(Button(_label(p.title), f"{PREFIX}:{p.id}") for p in match.products)
            await ctx.reply(
                Reply(
                    text=f"Several products match “{plain(args)}”. Which one did you buy?",
                    buttons=(*buttons, Button("None of these", f"{PREFIX}:{NONE}")),
                )
            )

    @router.action(PREFIX)
    async def choose(ctx: Context, data: str) -> None:
        if data == NONE:
            await ctx.reply(Reply(text="OK, nothing recorded.", private=True))
            return
        # A product id the store can hold; str.isdigit() also takes "²", which int() refuses.
        valid = re.fullmatch(r"[0-9]{1,18}", data) is not None
        product = await repo.get_product(ctx.session, product_id=int(data)) if valid else None
        if product is None:
            await ctx.reply(Reply(text="That button has expired.", private=True))
            return
        await _record(ctx, product.id, product.title)

    @router.command("purchases", summary="list what you have bought")
    async def purchases(ctx: Context, args: str) -> None:
        rows = await repo.user_purchases(ctx.session, user_id=ctx.user.id, limit=HISTORY_SHOWN)
        if not rows:
            await ctx.reply_text("You haven't bought anything yet. Record a purchase with /buy.")
            return
        total = await repo.count_purchases(ctx.session, user_id=ctx.user.id)
        lines = [f"**Your purchases** ({total}, newest first)"]
        lines += [
            f"{i}. {plain(product.title)} — {purchase.purchased_at:%Y-%m-%d}"
            for i, (purchase, product) in enumerate(rows, start=1)
        ]
        if total > len(rows):
            lines.append(f"…and {total - len(rows)} earlier.")
        await ctx.reply_text("\n".join(lines))

    @router.command("recommend", summary="products you may like, each with the reason", args="[n]")
    async def recommend(ctx: Context, args: str) -> None:
        count = parse_count(args)
        if count is None:
            await ctx.reply_text(RECOMMEND_USAGE)
            return
        recommender = await _recommender(ctx)
        if recommender is None:
            return
        async with ctx.responder.typing():
            result = await recommender.recommend(ctx.session, user_id=ctx.user.id, n=count)
        if not result.suggestions:
            empty = (
                "The catalog is empty, so there is nothing to recommend yet."
                if result.popular
                else "You have bought everything in the catalog, so I have nothing new to suggest."
            )
            await ctx.reply_text(empty)
            return
        head = (
            "You haven't bought anything yet, so here are our most popular products:"
            if result.popular
            else "**Recommended for you**"
        )
        lines = [head] + [
            f"{i}. **{plain(s.product.title)}** — {plain(s.reason)}"
            for i, s in enumerate(result.suggestions, start=1)
        ]
        await ctx.reply_text("\n".join(lines))
