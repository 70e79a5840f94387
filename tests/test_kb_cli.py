"""`switchboard kb add` and `kb list` after EMBEDDING_MODEL changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import model_services
from bot.cli import main
from bot.settings import Settings
from tests.fakes.kb_embedder import HashingEmbedder


def test_switching_models_re_embeds_and_list_flags_the_rest(
    migrated: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "opening.txt").write_text("We are open from 9 to 5 on weekdays.\n")
    (docs / "refunds.md").write_text("# Refunds\n\nRefunds arrive within five days.\n")

    def use(name: str, dim: int) -> None:
        embedder = HashingEmbedder(dim, name=f"local:{name}")
        monkeypatch.setattr(model_services, "build_embedder", lambda _settings: embedder)

    use("all-minilm-l6-v2", 384)
    assert main(["kb", "add", str(docs), "--no-progress"]) == 0
    assert "2 added, 0 updated, 0 unchanged, 0 failed" in capsys.readouterr().out

    use("minilm-intents", 768)
    assert main(["kb", "add", str(docs / "refunds.md"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("re-embedded ")
    assert "0 added, 0 updated, 1 re-embedded, 0 unchanged, 0 failed" in out

    assert main(["kb", "list"]) == 0
    opening, refunds, total = capsys.readouterr().out.splitlines()
    assert opening.endswith("[embedded by all-minilm-l6-v2: `kb add` it again]")
    assert refunds.endswith("refunds.md)")
    assert total == "2 documents, 2 chunks"


def test_a_file_that_fails_fails_the_command(
    migrated: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(model_services, "build_embedder", lambda _settings: HashingEmbedder())
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.txt").write_text("We are open from 9 to 5 on weekdays.\n")
    (docs / "broken.pdf").write_bytes(b"not a pdf")
    assert main(["kb", "add", str(docs), "--no-progress"]) == 1
    assert "1 added, 0 updated, 0 unchanged, 1 failed" in capsys.readouterr().out


def test_a_binary_file_fails_alone_and_an_empty_folder_fails_the_command(
    migrated: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(model_services, "build_embedder", lambda _settings: HashingEmbedder())
    (tmp_path / "binary.csv").write_bytes(b"\x8f\x00\r\n\x1f\xff\x00,\xfe\n" * 50)
    (tmp_path / "good.md").write_text("# Good\n\nWe open at nine.\n")
    files = [str(tmp_path / "binary.csv"), str(tmp_path / "good.md")]
    assert main(["kb", "add", *files, "--no-progress"]) == 1
    binary, good, total = capsys.readouterr().out.splitlines()
    assert binary.endswith("binary.csv  looks like a binary file (it holds NUL bytes), not text")
    assert good.startswith("added ")
    assert total == "1 added, 0 updated, 0 unchanged, 1 failed"

    (tmp_path / "empty").mkdir()
    assert main(["kb", "add", str(tmp_path / "empty"), "--no-progress"]) == 1
    empty, total = capsys.readouterr().out.splitlines()
    assert empty.startswith("failed ")
    assert empty.endswith(
        "empty  no supported files found here (.csv, .htm, .html, .markdown, "
        ".md, .pdf, .text, .txt; hidden ones are skipped)"
    )
    assert total == "0 added, 0 updated, 0 unchanged, 1 failed"


def test_kb_add_warns_about_documents_the_model_cannot_read(
    migrated: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    class EnglishOnly(HashingEmbedder):
        def readable(self, text: str) -> bool:
            return not any("\u4e00" <= char <= "\u9fff" for char in text)

    monkeypatch.setattr(model_services, "build_embedder", lambda _settings: EnglishOnly())
    (tmp_path / "faq.csv").write_text(
        "question,answer\n如何退货？,三十天内可退货。\nHow do I return a lamp?,Within 30 days.\n"
    )
    (tmp_path / "hours.txt").write_text("We are open from 9 to 5 on weekdays.\n")
    assert main(["kb", "add", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "warning: 1 of its 2 chunks are in a script that" in out
    assert "EMBEDDING_MODEL" in out and out.count("warning:") == 1
