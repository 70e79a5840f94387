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


@dataclass(frozen=True, slots=True)
class Intent:
    """The intent chosen for a message, and its score (0 when decided by form alone)."""

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
    return stripped.endswith("?") or bool(_QUESTION_START.match(stripped))


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
