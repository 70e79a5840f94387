"""Text forms that keyboards produce and models do not read."""

from __future__ import annotations

import re
import unicodedata

# Character ranges, for use inside a regular expression's [...].
HAN_CHARS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
KANA_CHARS = "\u3040-\u30ff"
HANGUL_CHARS = "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"
# Scripts written without spaces between words: CJK punctuation, kana, bopomofo, Han (BMP and
# supplementary planes), full- and half-width forms, and Hangul (Korean has spaces, but a MiniLM
# tokeniser makes about two tokens of each syllable). U+3000, the ideographic space, is left
# out: it is whitespace to str.split().
CJK_CHARS = (
    "\u2e80-\u2fdf\u3001-\u303f"
    + KANA_CHARS
    + "\u3100-\u312f\u31a0-\u31ff"
    + HAN_CHARS
    + "\ufe30-\ufe4f\uff01-\uffef\U00020000-\U0003134f"
    + HANGUL_CHARS
)

HAN = re.compile(f"[{HAN_CHARS}]")
_KANA_HANGUL = re.compile(f"[{KANA_CHARS}\u31f0-\u31ff\uac00-\ud7af]")
_LATIN_WORD = re.compile(r"[A-Za-z]+")


def fold_width(text: str) -> str:
    """``text`` with full-width and half-width forms folded to their usual characters
    ("／ｈｅｌｐ" -> "/help", "２" -> "2", "ＧＲＥＡＴ" -> "GREAT"), as Chinese and Japanese
    keyboards type them. Narrower than NFKC on purpose: superscripts, circled digits and
    ligatures keep their meaning ("²" is not "2")."""
    return "".join(
        unicodedata.normalize("NFKC", c)
        if unicodedata.decomposition(c).startswith(("<wide>", "<narrow>"))
        else c
        for c in text
    )


def is_chinese(text: str) -> bool:
    """Written mainly in Chinese: Han characters outnumber Latin words ("iPhone 真好用" is), and
    it is not Japanese or Korean, which also use Han characters."""
    return chinese_weight(text) >= 0.5


def chinese_weight(text: str) -> float:
    """How much of ``text`` is Chinese, 0..1: its Han characters' share of them and its Latin
    words together (a Chinese word is one or two characters). 0 for Japanese and Korean."""
    han = len(HAN.findall(text))
    if not han or len(_KANA_HANGUL.findall(text)) * 4 >= han:
        return 0.0
    return han / (han + len(_LATIN_WORD.findall(text)))
