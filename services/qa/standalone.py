"""Make a follow-up question standalone from the stored conversation.

"And how long does that take?" cannot be searched on its own. A capable text model rewrites it
("How long does a refund take?"); with a small local model, whose rewrites drift, the question is
searched together with the recent user turns instead, which embeddings handle well.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from services.textforms import HAN_CHARS, KANA_CHARS
from services.types import ProviderError, TextGenerator, Turn

log = logging.getLogger(__name__)

RECENT_USER_TURNS = 2
SHORT_WORDS = 6
_REFERRING = frozenset(
    "it its it's that this these those they them their there he she his her one ones such "  # noqa: SIM905
    "same also too else".split()
)
_OPENERS = ("and ", "but ", "so ", "also ", "what about", "how about", "what if", "then ")
_COMMAND = re.compile(r"^[/\uff0f][A-Za-z0-9_]+(@\w+)?\s*")
_CJK = KANA_CHARS + HAN_CHARS
_WORD = re.compile(f"[{_CJK}]|[^\\W\\d_{_CJK}]+(?:'[^\\W\\d_{_CJK}]+)*")
_SOURCES = re.compile(r"\n\s*Sources:\s*\n")
_CITATION = re.compile(r"\s*\[\d+\]")
_EXTRACT_HEAD = "From the knowledge base:"
REWRITE_INSTRUCTION = (
    "Rewrite the user's last message as one standalone question that can be understood "
    "without the conversation. Keep its meaning and language. Reply with the question only."
)


def _words(text: str) -> list[str]:
    """Words in any alphabet; Chinese and Japanese characters count one each (a Chinese word
    is one or two of them), so a long question in those scripts is not taken as a short one."""
    return _WORD.findall(text.lower())


def is_short(question: str) -> bool:
    """Short enough to leave its subject unsaid ("how long do I have?")."""
    return len(_words(question)) <= SHORT_WORDS


def is_follow_up(question: str) -> bool:
    """Whether the question leans on earlier turns: it refers back, or is too short to stand."""
    words = _words(question)
    lowered = question.strip().lower()
    return len(words) <= 3 or lowered.startswith(_OPENERS) or any(w in _REFERRING for w in words)


def _user_turns(history: Sequence[Turn]) -> list[str]:
    texts = [_COMMAND.sub("", t.text).strip() for t in history if t.role == "user"]
    return [t for t in texts if t][-RECENT_USER_TURNS:]


def _plain_answer(text: str) -> str:
    """An earlier answer without its boilerplate: sources list, quote marks, citation numbers."""
    body = _SOURCES.split(text, maxsplit=1)[0].replace(_EXTRACT_HEAD, "")
    return " ".join(_CITATION.sub("", body.replace("\n>", "\n")).lstrip("> ").split())


def recent_context(history: Sequence[Turn]) -> str:
    """The latest exchange: the last user turn and the answer to it. A follow-up's "it" most
    often names something in there; the user turn before it is added when no answer exists."""
    last_user = max((i for i, t in enumerate(history) if t.role == "user"), default=None)
    if last_user is None:
        return ""
    answers = [
        _plain_answer(t.text)
        for t in history[last_user + 1 :]
        if t.role == "assistant" and not t.text.startswith("I don't know")
    ]
    if any(answers):
        parts = [_COMMAND.sub("", history[last_user].text).strip(), *answers]
    else:
        parts = _user_turns(history[: last_user + 1])
    return " ".join(p for p in parts if p)


@dataclass(frozen=True, slots=True)
class Query:
    """What to search for: the question, and the exchange it leans on, if any. The search adds
    their embeddings, the context's scaled by ``context_weight``."""

    text: str
    context: str = ""
    # A word that points back ("how much does *it* cost?") leaves the subject in the context:
    # full weight. Without one ("and for digital purchases?") the question names a new
    # subject and the context only narrows the topic: half weight.
    context_weight: float = 1.0

    @property
    def combined(self) -> str:
        return " ".join(p for p in (self.context, self.text) if p)


def combine(question: str, history: Sequence[Turn]) -> Query:
    """The question with the latest exchange as its context."""
    refers_back = any(w in _REFERRING for w in _words(question))
    return Query(question.strip(), recent_context(history), 1.0 if refers_back else 0.5)


async def rewrite(question: str, history: Sequence[Turn], *, text: TextGenerator) -> Query:
    """The model's standalone version of ``question``; the combined query if it fails."""
    transcript = "\n".join(
        f"{'User' if t.role == 'user' else 'Assistant'}: {_COMMAND.sub('', t.text).strip()}"
        for t in history[-6:]
    )
    turns = [
        Turn("system", REWRITE_INSTRUCTION),
        Turn("user", f"Conversation:\n{transcript}\n\nLast message: {question}"),
    ]
    try:
        pieces = [piece async for piece in text.stream(turns, max_tokens=64, temperature=0.0)]
    except ProviderError as exc:
        log.warning("question rewrite failed, combining turns instead: %s", exc.detail)
        return combine(question, history)
    rewritten = " ".join("".join(pieces).split()).strip('"')
    # A rewrite that is empty or rambles is worse than the plain combination.
    if not rewritten or len(rewritten) > 3 * len(combine(question, history).combined) + 40:
        return combine(question, history)
    return Query(rewritten)


async def standalone_question(
    question: str, history: Sequence[Turn], *, text: TextGenerator | None = None
) -> Query:
    """``question`` made searchable on its own; ``text`` given means: let the model rewrite."""
    if not _user_turns(history) or not is_follow_up(question):
        return Query(question.strip())
    if text is not None:
        return await rewrite(question, history, text=text)
    return combine(question, history)
