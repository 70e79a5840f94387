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


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("latin1.csv", "id,title\n1,Café crème\n".encode("latin-1")),
        ("latin1.jsonl", '{"id": "1", "title": "Café"}\n'.encode("latin-1")),
        ("binary.csv", bytes(range(256)) * 4),
    ],
)
def test_a_file_that_is_not_utf8_is_refused_in_a_line(
    name: str,
    content: bytes,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert main(["purchases", "import", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"switchboard: {name}: not UTF-8 text; save it as UTF-8"]


def test_a_csv_the_csv_reader_refuses_is_told_with_its_line(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(model_services, "build_embedder", lambda _settings: FakeEmbedder())
    path = tmp_path / "catalog.csv"
    path.write_text(f"id,title,description\na,Apple,\nb,Banana,{'x' * 200_000}\n")
    assert main(["catalog", "import", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "switchboard: catalog.csv: line 3: field larger than field limit (131072)"
    ]


@pytest.mark.parametrize("size", ["0", "-1", "many"])
@pytest.mark.parametrize("command", ["catalog", "purchases"])
def test_a_batch_size_below_one_is_a_usage_error(
    command: str, size: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "import", str(tmp_path / "rows.csv"), "--batch-size", size])
    assert exit_info.value.code == 2
    assert "argument --batch-size: " in capsys.readouterr().err


def test_a_folder_is_not_taken_for_a_missing_file(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["catalog", "import", str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"switchboard: {tmp_path} is a folder, not a file"
    ]


@pytest.mark.parametrize(
    ("given", "only", "told"),
    [
        ("missing", [], "no such folder: {data}"),
        ("file", [], "{data} is a file, not a folder"),
        ("empty", ["--only", "games"], "no such folder: {data}/amazon-games-llmrank"),
        ("ml-100k", [], "no such folder: {data}/amazon-games-llmrank"),
    ],
)
def test_eval_without_its_datasets_says_what_is_missing(
    given: str,
    only: list[str],
    told: str,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "datasets"
    if given == "file":
        data.write_text("")
    elif given != "missing":
        data.mkdir()
        if given != "empty":
            (data / given).mkdir()
    assert main(["eval", "recommend", str(data), *only]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"switchboard: {told.format(data=data)} (DATA_DIR should hold ")


def test_eval_names_a_dataset_file_that_is_not_there(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(model_services, "build_embedder", lambda _settings: FakeEmbedder())
    (tmp_path / "ml-100k").mkdir()
    assert main(["eval", "recommend", str(tmp_path), "--only", "ml-100k"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"switchboard: cannot read {tmp_path}/ml-100k/u.genre: No such file or directory"
    ]


def test_products_the_model_cannot_read_get_no_vector_and_a_warning(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import asyncio

    import numpy as np
    from sqlalchemy import select

    from storage.db import create_engine, session_factory, unit_of_work
    from storage.models import Product

    class EnglishOnly(FakeEmbedder):
        def readable(self, text: str) -> bool:
            return not any("\u4e00" <= char <= "\u9fff" for char in text)

    monkeypatch.setattr(model_services, "build_embedder", lambda _settings: EnglishOnly())
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("id,title\nlamp,落地灯\ntea,西湖龙井\nmouse,Wireless Mouse\n")
    assert main(["catalog", "import", str(catalog), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "3 products imported" in out and "cannot read 2 of them" in out

    async def vectors() -> dict[str, bool]:
        engine = create_engine(settings.db_url)
        try:
            async with unit_of_work(session_factory(engine)) as session:
                rows = (await session.scalars(select(Product))).all()
                return {p.external_id: bool(np.frombuffer(p.embedding, "<f4").any()) for p in rows}
        finally:
            await engine.dispose()

    # Noise vectors would make the lamp "similar to" the tea; zero ones make it similar to none.
    assert asyncio.run(vectors()) == {"lamp": False, "tea": False, "mouse": True}
