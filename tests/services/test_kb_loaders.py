"""Document loaders: what of a file becomes knowledge-base text."""

from __future__ import annotations

from pathlib import Path

from services.kb.loaders import load


def test_markdown_front_matter_is_metadata_not_text() -> None:
    text = "---\ntitle: 'Returns policy'\ntags: [faq]\n---\nSend it back within 30 days.\n"
    document = load(Path("returns.md"), text.encode())
    assert document.title == "Returns policy"
    [section] = document.sections
    assert (section.heading, section.text.strip()) == ("", "Send it back within 30 days.")


def test_a_rule_at_the_start_without_a_closing_one_is_text() -> None:
    document = load(Path("notes.md"), b"---\nNo front matter here.\n")
    assert document.title == "notes"
    assert "No front matter here." in document.sections[0].text
