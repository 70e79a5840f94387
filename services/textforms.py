"""Text forms that keyboards produce and models do not read."""

from __future__ import annotations

import unicodedata


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
