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


def test_a_text_files_heading_lines_become_its_sections() -> None:
    text = (
        "Account and password help\n\n"
        "Resetting your password\nChoose Forgot password. The link is valid for 1 hour.\n\n"
        "Two-factor authentication:\nTurn it on under Profile, Security.\n"
    )
    document = load(Path("account.txt"), text.encode())
    assert document.title == "Account and password help"
    assert [(s.heading, s.text.strip()) for s in document.sections] == [
        ("Resetting your password", "Choose Forgot password. The link is valid for 1 hour."),
        ("Two-factor authentication", "Turn it on under Profile, Security."),
    ]


def test_prose_in_a_text_file_stays_one_section() -> None:
    letter = "Dear team,\n\nthe meeting moved to Friday. Bring the slides.\nThanks\nAna\n"
    document = load(Path("notes.txt"), letter.encode())
    assert document.title == "notes"
    [section] = document.sections
    assert section.heading == "" and "Thanks\nAna" in section.text
