"""Chunking text without spaces between words: Chinese and Japanese support documents."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from services.kb.chunking import MAX_WORDS, chunk_document, chunk_section, split_sentences
from services.kb.loaders import load

PARAGRAPH = (
    "如果您在收到商品后三十天内不满意，可以申请退货。退款将在五个工作日内退回原支付方式。"
    "请保留原始包装和发票。"
)


def _chars(text: str) -> int:
    """A chunk's size: every character of Chinese text counts as a word."""
    return len("".join(text.split()))


def test_a_long_chinese_markdown_section_is_split_with_overlap() -> None:
    # Every paragraph ends differently, so a carried-over sentence is told from a new one.
    body = "\n\n".join(f"第{i}条：{PARAGRAPH}本条编号{i}。" for i in range(60))
    document = load(Path("退货.md"), f"# 退货政策\n\n## 退货和退款\n\n{body}\n".encode())
    drafts = chunk_document(document)
    assert len(drafts) > 20
    assert all(_chars(d.text) <= MAX_WORDS for d in drafts)
    assert {d.section for d in drafts} == {"退货和退款"}
    for before, after in itertools.pairwise(d.text for d in drafts):
        # The last sentence is carried over, as the next chunk's first paragraph.
        assert after.split("\n\n")[0].endswith(split_sentences(before)[-1])
    assert all(any(f"第{i}条：" in d.text for d in drafts) for i in range(60))


def test_a_long_chinese_paragraph_is_cut_at_sentence_ends() -> None:
    chunks = chunk_section(PARAGRAPH * 8, max_words=60, overlap_words=15)
    assert len(chunks) > 3
    assert all(_chars(c) <= 60 for c in chunks)
    assert all(c.endswith("。") for c in chunks)


def test_chinese_without_any_sentence_end_is_still_cut() -> None:
    run = "退货" * 200
    chunks = chunk_section(run, max_words=50, overlap_words=10)
    assert "".join(chunks) == run
    assert all(_chars(c) <= 50 for c in chunks)


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        (
            "退货需要三十天。退款需要五天！有问题吗？",
            ["退货需要三十天。", "退款需要五天！", "有问题吗？"],
        ),
        ("请联系客服；我们会回复……谢谢。", ["请联系客服；", "我们会回复……", "谢谢。"]),
        ("他说：“好的。”然后走了", ["他说：“好的。”", "然后走了"]),
        ("返品できます。 返金は5日以内です。", ["返品できます。", "返金は5日以内です。"]),
        ("保修一年!iPhone 除外。", ["保修一年!", "iPhone 除外。"]),
    ],
)
def test_chinese_and_japanese_sentences_end_at_their_punctuation(
    text: str, sentences: list[str]
) -> None:
    assert split_sentences(text) == sentences


def test_english_is_split_and_chunked_as_before() -> None:
    text = (
        "Wait… what? Yes!! The parcel ships today. It arrives in 3 days… usually.\n\n"
        "Call us on 0800 123 (24/7). We answer in English."
    )
    assert split_sentences(text.split("\n\n")[0]) == [
        "Wait… what?",
        "Yes!!",
        "The parcel ships today.",
        "It arrives in 3 days… usually.",
    ]
    assert chunk_section(text, max_words=12, overlap_words=4) == [
        "Wait… what? Yes!! The parcel ships today.",
        "The parcel ships today.\n\nIt arrives in 3 days… usually.",
        "Call us on 0800 123 (24/7). We answer in English.",
    ]


def test_a_chinese_text_files_heading_lines_become_its_sections() -> None:
    text = (
        "退货指南\n\n"
        "退货政策\n收到商品后三十天内可以退货。\n\n"
        "退款时间：\n退款在五个工作日内到账。\n\n"
        "我们会在收到退货后检查商品，然后退款。\n第二行。\n"
    )
    document = load(Path("returns.txt"), text.encode())
    assert document.title == "退货指南"
    assert [(s.heading, s.text.strip()) for s in document.sections] == [
        ("退货政策", "收到商品后三十天内可以退货。"),
        (
            "退款时间",
            "退款在五个工作日内到账。\n\n我们会在收到退货后检查商品，然后退款。\n第二行。",
        ),
    ]
