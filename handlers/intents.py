"""Intent routing of free-form text: drawing → /image, "what should I buy" → /recommend,
purchase statements → /buy, questions → the knowledge base, anything else → chat.

Each intent is a handful of exemplar phrases; a message goes to the intent whose closest
exemplars are nearest in embedding space, if they are near enough, so it works offline with the
packaged MiniLM. Commands never get here (the router matches them first). Other features are
reached by command name through the router's registry, so a missing feature (no /image
registered) falls back to chat instead of failing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from handlers.chat import generate
from handlers.context import Context
from handlers.qa import answer_question, kb_has_documents, kb_knows
from handlers.router import Command, Router
from services.types import Embedder, ProviderError

log = logging.getLogger(__name__)

DRAW, RECOMMEND, BUY, QUESTION, CHAT = "draw", "recommend", "buy", "question", "chat"
EXEMPLARS: Mapping[str, Sequence[str]] = {
    DRAW: (
        "draw a cat",
        "draw me a picture of a house",
        "paint a sunset over the sea",
        "sketch a dragon",
        "generate an image of a robot",
        "make a picture of a forest",
        "create an illustration of a castle",
        "can you draw a dog wearing a hat",
        "show me a picture of a spaceship",
        "render a logo for my bakery",
        "paint a portrait of a knight",
        "I'd like an image of mountains at night",
        "illustrate a city in the rain",
        "doodle a smiling sun",
    ),
    RECOMMEND: (
        "what should I buy",
        "what should I buy next",
        "recommend me something",
        "any recommendations for me?",
        "what do you recommend",
        "suggest something I'd like",
        "what game should I get",
        "give me some suggestions to buy",
        "what would you recommend based on my purchases",
        "I need ideas for what to get",
        "what else might I like",
        "suggest a product for me",
        "which one should I pick up next",
        "what's a good thing to buy",
        "help me choose something to buy",
    ),
    BUY: (
        "I bought a new keyboard",
        "I just purchased Zelda",
        "I ordered a laptop yesterday",
        "I got the PlayStation 5",
        "just picked up Elden Ring",
        "I've bought a pair of headphones",
        "I purchased a kindle today",
        "add Mario Kart to my purchases",
        "record that I bought a switch",
        "I bought FIFA 23 last week",
        "we bought a coffee maker",
        "my new purchase is a camera",
        "I finally bought the game",
    ),
    QUESTION: (
        "how do I reset my password?",
        "what is your refund policy?",
        "how long does delivery take?",
        "can I change my order?",
        "where is my package?",
        "do you ship internationally?",
        "how can I cancel my subscription",
        "what are your opening hours?",
        "is there a warranty on this?",
        "why was my card declined?",
        "I can't log in to my account",
        "how much does it cost?",
        "how do I contact support",
        "which plans include phone support?",
        "what payment methods do you accept?",
        "my order arrived damaged, what do I do?",
        "how do I return an item",
        "is my data safe with you?",
    ),
    CHAT: (
        "hello",
        "hi there",
        "good morning",
        "thanks!",
        "thank you so much",
        "bye",
        "how are you?",
        "what's your name?",
        "tell me a joke",
        "I'm bored",
        "lol",
        "that's great",
        "write a poem about autumn",
        "my name is Ada",
        "what is my name?",
        "do you remember what I said?",
        "ok",
        "cool",
        "let's talk about movies",
        "write a short story about a fox",
        "translate good night into French",
        "what do you think about cats?",
        "I had a long day",
        "you are funny",
        "compose a song about summer",
        "write a limerick",
        "are you human?",
        "what's your favourite food?",
        "what did I say earlier?",
    ),
}
THRESHOLD = 0.40  # below it the surface form decides: a question → QA, anything else → chat
# The verb carries these intents, while embeddings of short messages lean on their objects
# ("Halo Infinite" looks like chat): a matching verb adds this much to the intent's score.
CUE_BONUS = 0.15
ACTION_THRESHOLD = 0.55  # for an action intent whose verb is absent
MIN_SELF_CHECK = 0.8  # MiniLM scores 0.92; bag-of-words test fakes about 0.6
CUES: Mapping[str, re.Pattern[str]] = {
    DRAW: re.compile(
        r"^(please\s+)?((can|could|would)\s+you\s+)?(please\s+)?(draw|paint|sketch|render|doodle|"
        r"illustrate)\b|\b(image|picture|drawing|painting|illustration|artwork|wallpaper|logo|"
        r"cartoon|comic)\s+(of|with|showing)\b",
        re.I,
    ),
    BUY: re.compile(
        r"\b(i|we)\b.{0,20}\b(bought|purchased|ordered|picked up)\b"
        r"|^(just\s+)?(bought|purchased|ordered|picked up)\b"
        r"|\b(i|we)\s+(just\s+|finally\s+)?got\s+(a|an|the|my|myself|\w+\s+on\s+sale)\b",
        re.I,
    ),
    RECOMMEND: re.compile(r"\b(recommend\w*|suggest\w*)\b|\bshould i (buy|get|play|order)\b", re.I),
}
TOP = 2  # an intent's score: the mean similarity of its TOP closest exemplars
_QUESTION_START = re.compile(
    r"^(how|what|when|where|why|who|which|can|could|do|does|did|is|are|will|should|may)\b", re.I
)
_DRAW_PREFIX = re.compile(
    r"^(please\s+)?((can|could|would)\s+you\s+)?(please\s+)?(draw|paint|sketch|render|doodle|"
    r"illustrate|generate|create|make|show)\s+(me\s+)?((an?|the)\s+)?"
    r"((image|picture|drawing|painting|illustration|photo|sketch)\s+(of\s+)?)?((an?|the)\s+)?",
    re.I,
)
_BUY_PREFIX = re.compile(
    r"^(i|we)\s*('ve|\s+have)?\s+(just\s+|finally\s+)?(bought|purchased|ordered|got|picked up)\s+",
    re.I,
)

# Chinese. MiniLM reads Chinese as unknown tokens ("帮我画一只猫" is "[UNK] 我 [UNK] 一 [UNK]
# [UNK]"): its scores say nothing about a Chinese message, and Chinese exemplars would only blur
# the English ones. So the form decides a Chinese question, and a whole-message pattern decides
# a Chinese action; the patterns are narrow because no embedding gives a second opinion.
# Only openers that start questions, not statements: "几乎每天" (almost every day), "哪里都一样"
# (the same everywhere) and "怎么都行" (anything goes) open with question words too.
_ZH_QUESTION_START = re.compile(
    r"^(请问|怎样|如何|为什么|为何|多少(?!有点)|多久|几[点时天号]|能不能|可不可以|有没有|"
    r"(怎么|什么|哪(里|儿|个|些|家|种|款|天)|是不是)(?!.*[都也]))"
)
_ZH_QUESTION_WORD = re.compile(
    r"怎么|怎样|如何|为什么|为何|什么|哪|多少|多久|多长|谁|啥|几[点时天号次]"
)
_ZH_STATEMENT_NE = re.compile(r"[在着还正也]")
_ZH_FINAL = re.compile(r"(吗|呢)[?？.。!！~～]*$")
_ZH_ASK = r"(?P<ask>(请你?|麻烦你?)?(你?(能|可以|能不能|可不可以|能否))?)"
_ZH_FOR_ME = r"(?P<me>帮我|给我|替我|为我|帮忙)?"
# "一只", "两本", "个": a count and its measure word, dropped from the object ("一个台灯" -> 台灯).
_ZH_MEASURE = (
    r"(?P<measure>([一两二三四五六七八九十几0-9０-９]+)(只|个|张|幅|条|座|棵|头|匹|朵|位|片|辆|"
    r"艘|间|栋|台|本|部|件|双|块|套|副|把|支|瓶|盒|份|款)|个)?"
)
_ZH_OBJECT = r"(?P<what>[^，,。；;？?！!、]+?)"  # one clause: "…，但是坏了" is not an order
_ZH_DRAW = re.compile(
    rf"^{_ZH_ASK}{_ZH_FOR_ME}(?P<verb>画|绘制|生成)(一下)?{_ZH_MEASURE}{_ZH_OBJECT}"
    r"(吗|好吗|可以吗|行吗|好不好|吧)?[.。!！~～?？]*$"
)
_ZH_PICTURE = re.compile(r"的?(图|图片|图像|照片|插画|插图|画|壁纸|头像)$")
_ZH_BUY = re.compile(
    r"^(我们?)?(刚刚?|刚才|才|今天|昨天|前天|上周|终于|已经|也){0,2}(买了|购买了|入手了|订了|下单了)"
    rf"{_ZH_MEASURE}{_ZH_OBJECT}[.。!！~～]*$"
)
_ZH_PARTICLE = re.compile(r"(了|啦|哦|呀|喔|哈)+$")
ZH_ACTION_CHARS = 200
_ZH_NOT_AN_ITEM = re.compile(r"但|可是|不过|然后|结果|却|[吗呢吧么]$|没有?$")
_ZH_RECOMMEND = re.compile(
    rf"^{_ZH_ASK}(你们?)?((给我|帮我|为我)推荐|推荐(一下|点|些|几|一|个|什么|啥|吗|$))"
    r"|^(我们?)?(应该|该|要|可以)?买(点|些)?(什么|啥|哪个|哪款|哪一个)(好|呢|比较好)?[吗呢?？.。!！]*$"
    r"|有(什么|啥)(好的?|值得买的?|可以买的?)?(东西)?(可以|值得)?推荐"
)


@dataclass(frozen=True, slots=True)
class Intent:
    """The intent chosen for a message, and its score (0 when decided by form alone, or by a
    Chinese pattern)."""

    name: str
    score: float
    # Decided by the message's form (a question or not), no exemplar being near enough.
    by_form: bool = False

    @staticmethod
    def of_form(text: str, score: float = 0.0) -> Intent:
        """A question or chat, by how ``text`` reads."""
        return Intent(QUESTION if looks_like_question(text) else CHAT, score, by_form=True)


def looks_like_question(text: str) -> bool:
    stripped = text.strip()
    if stripped.endswith(("?", "？")) or _QUESTION_START.match(stripped):
        return True
    # The Chinese mirror of the rule: a question word first, or a final 吗/呢.
    if _ZH_QUESTION_START.match(stripped):
        return True
    final = _ZH_FINAL.search(stripped)
    if final is None:
        return False
    # A final 呢 asks after a thing ("我的订单呢") or with a question word, but also ends
    # statements: "我在吃饭呢" (ongoing), "还早呢" (emphasis), "我也是呢" (me too).
    return final[1] == "吗" or bool(
        _ZH_QUESTION_WORD.search(stripped) or not _ZH_STATEMENT_NE.search(stripped)
    )


def chinese_action(text: str) -> tuple[str, str] | None:
    """The action a Chinese message asks for and the command's argument ("帮我画一只猫" ->
    (draw, 猫)), or None. Commands are not free text and never get here."""
    stripped = text.strip()
    if len(stripped) > ZH_ACTION_CHARS:  # a request is short; and the patterns stay linear
        return None
    if (match := _ZH_DRAW.match(stripped)) is not None:
        what = match["what"]
        # A bare "画…" is usually about painting ("画画很好玩", "画家"), not a request.
        asked = match["ask"] or match["me"] or match["measure"]
        picture = _ZH_PICTURE.search(what)
        if (
            asked
            and not what.startswith(("画", "得", "了", "过", "着", "的"))
            and not _ZH_QUESTION_WORD.search(what)
            and (match["verb"] != "生成" or picture is not None)  # not "生成一份报告"
        ):
            # "一张猫的图" -> 猫; "一张风景图" stays whole, "图" being part of the subject.
            if picture is not None and picture[0].startswith("的") and picture.start() > 0:
                what = what[: picture.start()]
            return DRAW, what
    if (match := _ZH_BUY.match(stripped)) is not None:
        what = _ZH_PARTICLE.sub("", match["what"])  # "我买了一个台灯了" -> 台灯
        if not _ZH_NOT_AN_ITEM.search(what) and not _ZH_QUESTION_WORD.search(what):
            return BUY, what
    if _ZH_RECOMMEND.search(stripped):
        return RECOMMEND, ""
    return None


class IntentClassifier:
    """Nearest-exemplar intent detection; exemplar vectors are computed once per embedder."""

    def __init__(
        self, exemplars: Mapping[str, Sequence[str]] = EXEMPLARS, *, threshold: float = THRESHOLD
    ) -> None:
        self.threshold = threshold
        self._names = [name for name, phrases in exemplars.items() for _ in phrases]
        self._phrases = [phrase for phrases in exemplars.values() for phrase in phrases]
        self._vectors: NDArray[np.float32] | None = None
        self._embedder: Embedder | None = None

    async def _exemplars(self, embedder: Embedder) -> NDArray[np.float32] | None:
        """The exemplar vectors, or None when this embedder fails the self-check."""
        if self._embedder is not embedder:
            vectors = await embedder.embed(self._phrases)
            accuracy = self.self_check(vectors)
            self._embedder = embedder
            self._vectors = vectors if accuracy >= MIN_SELF_CHECK else None
            if self._vectors is None:
                log.warning(
                    "the embeddings service tells the intent exemplars apart only %.0f%% of the "
                    "time; free text is routed by its form alone (question or chat)",
                    100 * accuracy,
                )
        return self._vectors

    def _scores(self, similarity: NDArray[np.float32]) -> dict[str, float]:
        scores: dict[str, float] = {}
        for name in dict.fromkeys(self._names):
            mine = np.sort(similarity[[n == name for n in self._names]])[-TOP:]
            scores[name] = float(mine.mean())
        return scores

    def self_check(self, vectors: NDArray[np.float32]) -> float:
        """Leave-one-out accuracy on the exemplars. An embedder without meaning (a test fake,
        a misconfigured model) would send free text to random features; it fails this."""
        similarity = vectors @ vectors.T
        np.fill_diagonal(similarity, -np.inf)
        hits = []
        for row, name in enumerate(self._names):
            scores = self._scores(similarity[row])
            hits.append(max(scores, key=scores.__getitem__) == name)
        return float(np.mean(hits))

    async def classify(self, text: str, embedder: Embedder | None) -> Intent:
        by_form = Intent.of_form(text)
        try:
            exemplars = await self._exemplars(embedder) if embedder is not None else None
            if embedder is None or exemplars is None:  # the surface form alone
                return by_form
            # Like an English verb cue, but decisive: the embeddings cannot read Chinese.
            if (chinese := chinese_action(text)) is not None:
                return Intent(chinese[0], 0.0)
            vector = (await embedder.embed([text]))[0]
        except ProviderError as exc:
            # An embeddings outage must not stop plain chat, which does not need them.
            log.warning("intent routing by the message's form: embeddings failed (%s)", exc)
            return by_form
        scores = self._scores(exemplars @ vector)
        cued = {name for name, cue in CUES.items() if name in scores and cue.search(text)}
        for name in cued:
            scores[name] += CUE_BONUS
        best = max(scores, key=scores.__getitem__)
        log.debug("intent scores for %r: %s", text, scores)
        # Actions change things (a purchase is recorded, an image is paid for), so without
        # their verb they need a clearly closer match than a question or chat does.
        needed = self.threshold if best in cued or best not in CUES else ACTION_THRESHOLD
        if scores[best] < needed:
            return Intent.of_form(text, scores[best])
        return Intent(best, scores[best])


def _command(ctx: Context, name: str) -> Command | None:
    return next((c for c in ctx.router.commands if c.name == name), None)


async def _catalog_has_products(ctx: Context) -> bool:
    recommender = ctx.services.recommendations
    if recommender is None:
        return False
    async with ctx.reading() as session:
        try:
            return len(await recommender.index(session)) > 0
        except ProviderError as exc:  # the catalog's vectors could not be made
            log.warning("shopping intents skipped: the catalog is unavailable (%s)", exc)
            return False


def strip_prefix(pattern: re.Pattern[str], text: str) -> str:
    rest = pattern.sub("", text.strip(), count=1).strip(" .!?")
    return rest or text.strip()


async def route_text(ctx: Context, text: str, intent: Intent) -> str:
    """Run the feature for ``intent``; the name of the route actually taken."""
    targets = {
        DRAW: ("image", _DRAW_PREFIX),
        RECOMMEND: ("recommend", None),
        BUY: ("buy", _BUY_PREFIX),
    }
    if intent.name in targets:
        name, prefix = targets[intent.name]
        command = _command(ctx, name)
        chinese = chinese_action(text)
        if chinese is not None and chinese[0] == intent.name:
            args = chinese[1]
        else:
            args = strip_prefix(prefix, text) if prefix is not None else ""
        # Shopping needs a catalog: without one, "I bought it in January, can I return it?"
        # is a question or chat like any other.
        shop = name in ("buy", "recommend")
        if (
            command is not None
            and (args or not command.args_required)
            and (not shop or await _catalog_has_products(ctx))
        ):
            await command.handler(ctx, args)
            return name
        intent = Intent.of_form(text)
    if (intent.name == QUESTION and await kb_has_documents(ctx)) or (
        # "yo can i get my money back" reads like chat but is a support question: a message
        # that is not clearly chat goes to the knowledge base when that knows the answer.
        intent.name == CHAT and intent.by_form and await kb_knows(ctx, text)
    ):
        await answer_question(ctx, text)
        return "ask"
    await generate(ctx, ctx.history, text)
    return CHAT


def register(router: Router) -> None:
    """Make intent routing the free-text handler; register it after `chat.register`."""
    classifier = IntentClassifier()

    @router.text
    async def free_text(ctx: Context, text: str) -> None:
        intent = await classifier.classify(text, ctx.services.embeddings)
        taken = await route_text(ctx, text, intent)
        log.info("intent %s (%.2f) -> %s", intent.name, intent.score, taken)
