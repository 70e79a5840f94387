"""Markdown for the terminal: styles on a tty, plain text on a pipe, streamed as it arrives."""

from __future__ import annotations

import io
import itertools
import random
import re
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.compose import App
from bot.platforms.console import ConsolePlatform, ConsoleResponder
from bot.platforms.console_render import MarkdownStream, render, sanitize, settled
from tests.fakes.text import FakeTextGenerator

BOLD, UNBOLD = "\x1b[1m", "\x1b[22m"
ITALIC, UNITALIC = "\x1b[3m", "\x1b[23m"
CYAN, UNCYAN = "\x1b[36m", "\x1b[39m"

_SGR = re.compile(r"\x1b\[(\d+)m")
_ON = {"1": "bold", "3": "italic", "9": "strike", "36": "code"}
_OFF = {"22": "bold", "23": "italic", "29": "strike", "39": "code"}


def cells(text: str) -> list[tuple[str, frozenset[str]]]:
    """What a terminal shows: each character with the styles it is drawn in."""
    styles: set[str] = set()
    out: list[tuple[str, frozenset[str]]] = []
    for index, piece in enumerate(_SGR.split(text)):
        if index % 2:
            if piece in _ON:
                styles.add(_ON[piece])
            else:
                styles.discard(_OFF[piece])
        else:
            out.extend((char, frozenset(styles)) for char in piece)
    return out


def left_styled(text: str) -> bool:
    """Whether ``text`` leaves a style on at its end."""
    styles: set[str] = set()
    for code in _SGR.findall(text):
        if code in _ON:
            styles.add(_ON[code])
        else:
            styles.discard(_OFF[code])
    return bool(styles)


def streamed(chunks: Iterable[str], *, styled: bool) -> list[str]:
    """The pieces a stream writes for ``chunks``, the last being what ``close`` writes."""
    stream = MarkdownStream(styled=styled)
    return [*(stream.feed(chunk) for chunk in chunks), stream.close()]


def chunked(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def pieces_at(text: str, cuts: Iterable[int]) -> list[str]:
    bounds = sorted({0, len(text), *(cut for cut in cuts if 0 < cut < len(text))})
    return [text[start:end] for start, end in itertools.pairwise(bounds)]


# --- rendering a whole reply -------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "plain"),
    [
        ("**Switchboard stats**\nUsers: 3", "Switchboard stats\nUsers: 3"),
        ("Use `/image <prompt>` to draw.", "Use /image <prompt> to draw."),
        ("*italic*, __strong__, ~~gone~~", "italic, strong, gone"),
        ("[the docs](https://x.io/a_b)", "the docs (https://x.io/a_b)"),
        ("[https://x.io](https://x.io)", "https://x.io"),
        ("[run](javascript:alert(1))", "[run](javascript:alert(1))"),
        ("# Heading\n## Sub heading ##", "Heading\nSub heading"),
        (
            "- one\n  - nested\n* two\n1. first\n2) second",
            "• one\n  • nested\n• two\n1. first\n2) second",
        ),
        ("> quoted **text**\n>\n> more", "│ quoted text\n│\n│ more"),
        ("```python\ndef f():\n    return 1\n```\nafter", "def f():\n    return 1\nafter"),
        ("~~~\nunclosed **code**\n", "unclosed **code**"),
        ("above\n\n---\nbelow", "above\n\n———\nbelow"),
        ("[1] and [2](not a link)", "[1] and [2](not a link)"),
        ("snake_case_words and 2 * 3 * 4", "snake_case_words and 2 * 3 * 4"),
        ("an **unclosed marker", "an **unclosed marker"),
        ("\\*escaped\\*", "*escaped*"),
        ("\n\n  \nfirst\n\n\nlast\n\n", "first\n\n\nlast"),
        ("emoji 😀 **粗体** 中文", "emoji 😀 粗体 中文"),
    ],
)
def test_plain_rendering_drops_the_markers(markdown: str, plain: str) -> None:
    assert render(markdown, styled=False) == plain


@pytest.mark.parametrize(
    ("markdown", "styled"),
    [
        ("**x**", f"{BOLD}x{UNBOLD}"),
        ("a *b* c", f"a {ITALIC}b{UNITALIC} c"),
        ("~~x~~", "\x1b[9mx\x1b[29m"),
        ("run `ls -l`", f"run {CYAN}ls -l{UNCYAN}"),
        ("```\ncode\n```", f"{CYAN}code{UNCYAN}"),
        ("# Title", f"{BOLD}Title{UNBOLD}"),
        ("## **Stats**", f"{BOLD}Stats{UNBOLD}"),
        ("**bold *both***", f"{BOLD}bold {ITALIC}both{UNBOLD}{UNITALIC}"),
        ("- **x**", f"• {BOLD}x{UNBOLD}"),
        ("> **q**", f"│ {BOLD}q{UNBOLD}"),
        ("[**docs**](https://x.io)", f"{BOLD}docs{UNBOLD} (https://x.io)"),
    ],
)
def test_styled_rendering_uses_ansi_codes(markdown: str, styled: str) -> None:
    assert render(markdown, styled=True) == styled


def test_styled_and_plain_show_the_same_text() -> None:
    markdown = "# Stats\n**Users**: 3\n- [docs](https://x.io) `code`\n> quote"
    shown = "".join(char for char, _ in cells(render(markdown, styled=True)))
    assert shown == render(markdown, styled=False)


# --- control characters --------------------------------------------------------------------

HOSTILE = [
    "\x1b]0;pwned\x07title",
    "\x1b[2J\x1b[31mred",
    "\x9b2Jcsi",
    "back\x08\x08space and\rcarriage",
    "del\x7f nul\x00 bell\x07 \x85nel",
    "```\n\x1b[31mcode\n```",
    "[x](https://x.io/\x1b[5m)",
    "# \x1bP+q\x1b\\heading",
]


@pytest.mark.parametrize("text", HOSTILE)
@pytest.mark.parametrize("styled", [False, True])
def test_no_control_character_from_the_text_reaches_the_terminal(text: str, styled: bool) -> None:
    for output in (render(text, styled=styled), "".join(streamed(text, styled=styled))):
        without_our_codes = _SGR.sub("", output) if styled else output
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", without_our_codes)


def test_sanitize_keeps_newlines_tabs_and_printable_text() -> None:
    assert sanitize("a\tb\r\nc\x1b[0m😀\x9b") == "a\tb\nc[0m😀"


def test_an_escape_split_across_chunks_is_still_removed() -> None:
    out = "".join(streamed(["safe \x1b", "]0;x\x07", " text"], styled=True))
    assert "\x1b]" not in out and "\x07" not in out
    assert out == "safe ]0;x text"


# --- streaming -----------------------------------------------------------------------------

SAMPLES = [
    "**Switchboard stats**\nUsers: 3\nMessages: 12",
    "Some **bold across** chunk borders, *italic*, __strong__ and ~~gone~~.",
    "See [1] and [2], and [the docs](https://example.com/a_b?c=1) too [3].",
    "snake_case_words, __init__, 2 * 3 * 4 = 24 and a*b*c",
    "```python\ndef f(x):\n    return x * 2  # **not bold**\n\n```\nafter the code",
    "# Heading\n## Sub **bold** ##\n- one\n  - two *it*\n1. first\n2) second\n---\n* * *",
    "> quoted **text**\n>\n> more `code`\nnot quoted",
    "emoji 😀 **粗体** 中文文本没有空格但是很长 [链接](https://example.com/路径) ✨👍🏽",
    "unclosed **bold and `code and [link",
    "`a``b` and ``x ` y`` and ```not a fence``` mid-line",
    "\n\n  leading\n\n\n\ntrailing\n\n\n",
    "[a](https://u.io)[b](https://u.io) side by side, [x ](https://y.io) label",
    "escaped \\*not\\* and \\_not\\_ and a trailing \\",
    "~~~\ntilde fence\n~~~~\n```\nunclosed fence\n\n",
    "--- **x**\n-- -\n- - x\n-\n+ plus\n1.5 million\n2024 was",
    "# **Title** and # not\n####### seven\n#hashtag",
    "***both*** and **bold *nested* inside** and *__mixed__*",
    '[run](javascript:alert(1)) and [x](<https://a.io> "title") <b>',
    "    indented code-ish line\n\ttabbed **b**",
    "a **b**c**d** e_f_ _g_ h",
]


def test_text_that_cannot_be_markdown_is_written_at_once() -> None:
    stream = MarkdownStream(styled=False)
    assert stream.feed("Hello wor") == "Hello wor"
    assert stream.feed("ld, 2 * 3 ") == "ld, 2 * 3"
    assert stream.feed("and [1] ") == " and [1]"


def test_an_open_construct_is_held_until_it_closes() -> None:
    stream = MarkdownStream(styled=True)
    assert stream.feed("a **bo") == "a"
    assert stream.feed("ld") == ""
    assert stream.feed("** and `co") == f" {BOLD}bold{UNBOLD} and"
    assert stream.feed("de` done") == f" {CYAN}code{UNCYAN} done"


def test_an_unclosed_marker_is_shown_literally_when_its_line_ends() -> None:
    stream = MarkdownStream(styled=False)
    assert stream.feed("2 **3") == "2"
    assert stream.feed(" and 4\nnext") == " **3 and 4\nnext"


def test_a_line_start_is_held_until_it_is_known() -> None:
    stream = MarkdownStream(styled=False)
    assert stream.feed("- ") == ""  # a bullet, or a rule "- - -"
    assert stream.feed("it") == "• it"
    assert stream.feed("em\n```py\nprint(1)\nprint") == "em\nprint(1)\nprint"
    assert stream.feed("(2)\n``") == "(2)"  # "``" may close the block
    assert stream.feed("`\ndone") == "\ndone"


@pytest.mark.parametrize("text", SAMPLES)
@pytest.mark.parametrize("styled", [False, True])
def test_streaming_shows_what_rendering_the_whole_text_shows(text: str, styled: bool) -> None:
    whole = render(text, styled=styled)
    rng = random.Random(text)
    chunkings = [chunked(text, size) for size in (1, 2, 3, 5, 8, len(text) or 1)]
    words = text.split(" ")
    chunkings.append([*(word + " " for word in words[:-1]), words[-1]])  # as the models stream
    cuts = rng.sample(range(1, len(text)), k=min(6, len(text) - 1))
    chunkings.append(pieces_at(text, cuts))
    for chunks in chunkings:
        pieces = streamed(chunks, styled=styled)
        assert cells("".join(pieces)) == cells(whole), chunks
        assert not any(left_styled(piece) for piece in pieces)
        if not styled:
            assert "".join(pieces) == whole


TOKENS = [
    *"ab 中😀*_~`[]()#>-+.!\\\n",
    "**",
    "__",
    "~~",
    "```",
    "https://x.io",
    "](https://x.io)",
    "1. ",
    "- ",
    "> ",
    "# ",
]


@settings(max_examples=400, deadline=None)
@given(
    tokens=st.lists(st.sampled_from(TOKENS), max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12),
    styled=st.booleans(),
)
def test_streaming_any_chunking_shows_the_whole_render(
    tokens: list[str], cuts: list[int], styled: bool
) -> None:
    text = "".join(tokens)
    chunks = pieces_at(text, cuts)
    assert cells("".join(streamed(chunks, styled=styled))) == cells(render(text, styled=styled))
    assert cells("".join(streamed(text, styled=styled))) == cells(render(text, styled=styled))


@pytest.mark.parametrize(
    ("line", "settled_at"),
    [
        ("plain text", 10),
        ("a **b", 2),
        ("a **b** c", 9),
        ("a **b**", 2),  # the closing run may go on
        ("snake_case_words", 16),
        ("2 * 3", 5),
        ("see [1", 4),
        ("see [1] x", 9),
        ("[a](https://x.io) b", 19),
        ("[a](https://x.io)", 0),  # a link next to it would merge with it
        ("x `code", 2),
        ("trailing \\", 9),
    ],
)
def test_settled_stops_at_the_first_open_construct(line: str, settled_at: int) -> None:
    assert settled(line) == settled_at


# --- the console ---------------------------------------------------------------------------


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


async def chat(app: App, lines: str, tmp_path: Path, out: io.StringIO) -> str:
    console = ConsolePlatform(
        stdin=io.StringIO(lines), stdout=out, image_dir=tmp_path / "images", user="ada"
    )
    await console.start(app.dispatcher.dispatch)
    return out.getvalue()


async def test_a_terminal_shows_bold_in_ansi(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = await chat(app, "/help\n", tmp_path, FakeTty())
    assert f"{BOLD}Commands{UNBOLD}" in out
    assert "**" not in out


async def test_a_streamed_reply_is_styled_on_a_terminal(
    app: App, fake_text: FakeTextGenerator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "")  # set but empty: colour stays on
    fake_text.answer = "Here is **x** and `y`."
    out = await chat(app, "hello\n", tmp_path, FakeTty())
    assert f"Here is {BOLD}x{UNBOLD} and {CYAN}y{UNCYAN}." in out


async def test_no_color_turns_the_styles_off(
    app: App, fake_text: FakeTextGenerator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    fake_text.answer = "Here is **x**."
    out = await chat(app, "/help\nhello\n", tmp_path, FakeTty())
    assert "\x1b" not in out
    assert "Commands\n" in out and "Here is x." in out


async def test_a_pipe_gets_plain_text(
    app: App, fake_text: FakeTextGenerator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    fake_text.answer = "**Switchboard** says [hi](https://x.io)"
    out = await chat(app, "/help\nhello\n", tmp_path, io.StringIO())
    assert "\x1b" not in out and "**" not in out and "`" not in out
    assert "Switchboard says hi (https://x.io)" in out


async def chunks_of(*chunks: str) -> AsyncIterator[str]:
    for chunk in chunks:
        yield chunk


async def test_stream_returns_the_raw_markdown(tmp_path: Path) -> None:
    out = FakeTty()
    responder = ConsoleResponder(out, tmp_path, styled=True)
    text = await responder.stream(chunks_of("  **Swi", "tch", "board** stats\n"))
    assert text == "**Switchboard** stats"
    assert out.getvalue() == f"{BOLD}Switchboard{UNBOLD} stats\n"


async def test_button_labels_cannot_drive_the_terminal(tmp_path: Path) -> None:
    from handlers.types import Button, Reply

    out = FakeTty()
    responder = ConsoleResponder(out, tmp_path, styled=True)
    # A product title from an imported catalog becomes a button label.
    evil = Button("Lamp\x1b]0;pwned\x07\x1b[2J\x9b31m", "buy:1")
    await responder.send(Reply(text="Which one?", buttons=(evil, Button("Desk", "buy:2"))))
    assert out.getvalue().endswith("[1: Lamp]0;pwned[2J31m]  [2: Desk]\n")
    assert not any(c in out.getvalue() for c in "\x1b\x07\x9b")
