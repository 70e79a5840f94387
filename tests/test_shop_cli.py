"""`switchboard catalog import` and `purchases import` from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import model_services
from bot.cli import main
from bot.settings import Settings
from tests.fakes.embedder import FakeEmbedder


def test_imports_print_a_summary_and_bad_lines(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(model_services, "build_embedder", lambda _settings: FakeEmbedder())
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(
        '{"id": "a", "title": "Apple"}\n{"id": "b"}\n{"id": "c", "title": "Cherry"}\n'
    )
    assert main(["catalog", "import", str(catalog), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "2 products imported" in out and "1 bad rows" in out
    assert "line 2: title is missing" in err

    purchases = tmp_path / "purchases.csv"
    purchases.write_text(
        "platform,user_id,product_id,time\ntest,1,a,2025-01-01\ntest,1,zz,2025-01-02\n"
    )
    assert main(["purchases", "import", str(purchases), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "1 purchases imported" in out
    assert "line 3: product 'zz' is not in the catalog" in err
    assert main(["purchases", "import", str(purchases), "--no-progress"]) == 0
    assert "0 purchases imported in 0 s, 1 already stored" in capsys.readouterr().out

    assert main(["purchases", "import", str(tmp_path / "missing.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
