from __future__ import annotations

import json
import os
from pathlib import Path

from plugkit.plugins.retrieval.ingest import ZipLimits, iter_documents, stable_id
from tests.plugins.retrieval.files import PNG_BYTES, docx_bytes, zip_bytes


def test_a_folder_yields_one_document_per_readable_file(tmp_path: Path) -> None:
    root = tmp_path / "notes"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("first note")
    (root / "sub" / "b.docx").write_bytes(docx_bytes(["second note"]))
    (root / ".hidden.txt").write_text("ignored")
    items = list(iter_documents([root]))
    assert [i.origin for i in items] == ["notes/a.txt", "notes/sub/b.docx"]
    assert [i.document.text for i in items if i.document] == ["first note", "second note"]
    doc = items[0].document
    assert doc is not None and doc.metadata is not None
    assert doc.metadata.source is not None and doc.metadata.source.value == "file"
    assert doc.metadata.source_id == "notes/a.txt"


def test_ids_are_stable_across_runs_and_working_directories(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# hello")
    first = [i.document.id for i in iter_documents([tmp_path / "docs"]) if i.document]
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        second = [i.document.id for i in iter_documents([Path("docs")]) if i.document]
    finally:
        os.chdir(cwd)
    assert first == second == [stable_id("file", "docs/a.md")]


def test_the_original_scripts_json_and_jsonl_formats_are_read(tmp_path: Path) -> None:
    records = [
        {"id": "e1", "text": "email body", "source": "email", "author": "ann", "created_at": "2023-01-01"},
        {"text": "no id here", "metadata": {"url": "https://x"}},
    ]
    (tmp_path / "docs.json").write_text(json.dumps(records))
    (tmp_path / "docs.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n{broken\n")
    items = list(iter_documents([tmp_path / "docs.json", tmp_path / "docs.jsonl"]))
    docs = [i.document for i in items if i.document]
    assert len(docs) == 4
    assert docs[0].id == "e1" and docs[0].metadata and docs[0].metadata.author == "ann"
    assert docs[1].id == stable_id("text", "no id here") and docs[1].metadata and docs[1].metadata.url == "https://x"
    assert [i.error for i in items if i.error] and "not JSON" in str(items[-1].error)


def test_custom_metadata_is_added_to_every_document(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("text")
    (tmp_path / "d.json").write_text(json.dumps([{"text": "t", "author": "orig"}]))
    items = list(iter_documents([tmp_path / "a.txt", tmp_path / "d.json"], {"author": "custom", "url": "https://u"}))
    assert all(i.document and i.document.metadata and i.document.metadata.author == "custom" for i in items)


def test_zip_members_are_read_and_unsupported_ones_reported(tmp_path: Path) -> None:
    archive = tmp_path / "bundle.zip"
    archive.write_bytes(zip_bytes({"x/one.txt": b"one", "two.docx": docx_bytes(["two"]), "pic.png": PNG_BYTES}))
    items = list(iter_documents([archive]))
    assert {i.origin: (i.document.text if i.document else None) for i in items} == {
        "bundle.zip/x/one.txt": "one",
        "bundle.zip/two.docx": "two",
        "bundle.zip/pic.png": None,
    }
    assert "PNG image" in str(next(i.error for i in items if i.error))


def test_a_zip_bomb_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(zip_bytes({"zeros.txt": b"0" * 5_000_000}))
    (item,) = list(iter_documents([archive], limits=ZipLimits(max_ratio=100)))
    assert item.document is None and "zip bomb" in str(item.error)
    (item,) = list(iter_documents([archive], limits=ZipLimits(max_total_bytes=1000, max_ratio=10**6)))
    assert "zip bomb" in str(item.error)


def test_a_missing_path_is_reported(tmp_path: Path) -> None:
    (item,) = list(iter_documents([tmp_path / "nope"]))
    assert item.error == "no such file or folder"


def test_a_markdown_files_links_become_its_links_metadata_unless_given(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("See [docs](https://docs.example/) and [docs again](https://docs.example/).\n")
    (doc,) = [i.document for i in iter_documents([tmp_path / "a.md"], {})]
    assert doc and doc.metadata and doc.metadata.custom["links"] == ["https://docs.example/"]
    assert "https://" not in doc.text
    (given,) = [i.document for i in iter_documents([tmp_path / "a.md"], {"links": ["mine"]})]
    assert given and given.metadata and given.metadata.custom["links"] == ["mine"]


def test_a_markdown_file_whose_metadata_is_full_is_read_without_its_links(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("See [docs](https://docs.example/).\n")
    full = {f"k{n}": n for n in range(63)}  # one key is kept free for a sync's content hash
    (item,) = list(iter_documents([tmp_path / "a.md"], full))
    assert item.error is None and item.document and item.document.metadata
    assert "links" not in item.document.metadata.custom and len(item.document.metadata.custom) == 63
