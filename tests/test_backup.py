"""The data-directory copy itself (plugkit.backup.copy_tree): files that go away while it runs."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from plugkit import backup


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A data directory with an index of two segment files."""
    data = tmp_path / "data"
    (data / "keywords").mkdir(parents=True)
    (data / "keywords" / "a.seg").write_bytes(b"segment a")
    (data / "keywords" / "b.seg").write_bytes(b"segment b")
    return data


def test_a_file_gone_between_the_listing_and_its_copy_is_left_out_and_the_rest_is_copied(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sqlite3.connect(source / "store.db") as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
    copy = shutil.copy2

    def merging_index(path: Any, destination: Any) -> Any:
        if Path(path).name == "a.seg":  # an index merging its segments while the copy runs
            (source / "keywords" / "b.seg").unlink()
        return copy(path, destination)

    monkeypatch.setattr(backup.shutil, "copy2", merging_index)
    report = backup.copy_tree(source, tmp_path / "copy")
    assert report.files == ["keywords/a.seg"] and report.databases == ["store.db"]
    assert (tmp_path / "copy" / "keywords" / "a.seg").read_bytes() == b"segment a"
    with sqlite3.connect(tmp_path / "copy" / "store.db") as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_a_file_gone_between_the_listing_and_the_look_at_its_header_is_left_out(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check = backup.is_sqlite

    def merging_index(path: Path) -> bool:
        if path.name == "a.seg":  # the index's merge deletes b.seg after the listing saw it
            (source / "keywords" / "b.seg").unlink()
        return check(path)

    monkeypatch.setattr(backup, "is_sqlite", merging_index)
    report = backup.copy_tree(source, tmp_path / "copy")
    assert report.files == ["keywords/a.seg"] and report.databases == []
    assert sorted(p.name for p in (tmp_path / "copy").rglob("*") if p.is_file()) == ["a.seg"]
