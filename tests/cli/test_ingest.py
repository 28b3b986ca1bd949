from __future__ import annotations

import asyncio
import gc
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from plugkit.cli import app
from plugkit.cli.ingest import DEFAULT_BATCH_SIZE, _local_target, _run, chunk_workers, documents_per_write
from plugkit.plugins.retrieval.embeddings.local import DIMENSION, MODEL_ID, LocalEmbedder
from plugkit.plugins.retrieval.embeddings.openai import OpenAIEmbedder
from plugkit.plugins.retrieval.ingest import Item
from plugkit.plugins.retrieval.models import Document
from plugkit.plugins.retrieval.stores.base import StoreInfo
from plugkit.plugins.retrieval.stores.embedded import EmbeddedStore
from tests.helpers import REPO_ROOT, PluginServer


def write_corpus(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir()
    (docs / "tides.txt").write_text("The moon's gravity pulls the oceans and makes the tides.")
    (docs / "notes.jsonl").write_text(
        json.dumps({"id": "n1", "text": "Glaciers carve valleys over thousands of years.", "author": "ice"}) + "\n"
    )
    return docs


def stored_chunks(data_dir: Path) -> int:
    async def count() -> int:
        store = EmbeddedStore(data_dir / "retrieval")
        await store.open(StoreInfo(MODEL_ID, DIMENSION))
        try:
            return await store.count()
        finally:
            await store.close()

    return asyncio.run(count())


def test_ingesting_twice_into_the_local_store_adds_nothing_twice(tmp_path: Path) -> None:
    docs, data_dir = write_corpus(tmp_path), tmp_path / "data"
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(
            app, ["ingest", str(docs), "--data-dir", str(data_dir), "--metadata", '{"url": "https://u"}']
        )
        assert result.exit_code == 0, result.output
        assert "2 documents ingested, 0 skipped" in result.output
    assert stored_chunks(data_dir) == 2


def test_the_local_ingest_never_prepares_the_model_of_lone_queries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared: list[object] = []
    monkeypatch.setattr(LocalEmbedder, "_start_query_path", lambda self, *args: prepared.append(args))
    monkeypatch.setenv("PLUGKIT_EMBED_DEVICE", "cpu")
    result = CliRunner().invoke(app, ["ingest", str(write_corpus(tmp_path)), "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert stored_chunks(tmp_path / "data") == 2 and prepared == []


def test_metadata_that_is_not_a_json_object_is_bad_usage(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["ingest", str(tmp_path), "--metadata", "[1, 2]"])
    assert result.exit_code == 2
    assert "JSON object" in result.output


def test_a_skipped_file_makes_the_exit_status_1(tmp_path: Path) -> None:
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "image.png"), "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert "PNG image" in result.output and "0 documents ingested, 1 skipped" in result.output


@pytest.mark.slow
def test_ingest_to_a_running_server_makes_the_documents_searchable(tmp_path: Path) -> None:
    docs = write_corpus(tmp_path)
    with PluginServer("retrieval", "--data-dir", str(tmp_path / "server")) as server:
        done = subprocess.run(
            [sys.executable, "-m", "plugkit", "ingest", str(docs), "--url", server.base_url],
            env=server.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        response = httpx.post(f"{server.base_url}/query", json={"queries": [{"query": "why are there tides"}]})
        assert response.json()["results"][0]["results"][0]["text"].startswith("The moon's gravity")
        glacier = httpx.get(f"{server.base_url}/documents/n1").json()
        assert glacier["chunks"][0]["metadata"]["author"] == "ice"


def _items(n: int) -> list[Item]:
    return [Item(f"doc{i}", Document(id=f"doc{i}", text=f"text {i}")) for i in range(n)]


async def test_batches_in_flight_deliver_every_document_once() -> None:
    delivered: list[str] = []
    concurrent = peak = 0

    async def send(documents: list[Document]) -> None:
        nonlocal concurrent, peak
        concurrent += 1
        peak = max(peak, concurrent)
        await asyncio.sleep(0.01)
        delivered.extend(d.id or "" for d in documents)
        concurrent -= 1

    ok, failed = await _run(_items(25), send, 4, Console(file=io.StringIO()), in_flight=2)
    assert (ok, failed) == (25, 0)
    assert sorted(delivered) == sorted(f"doc{i}" for i in range(25))
    assert peak == 2


async def test_the_objects_alive_after_the_first_write_are_left_out_of_later_full_collections() -> None:
    frozen_at_each_write: list[int] = []

    async def send(documents: list[Document]) -> None:
        frozen_at_each_write.append(gc.get_freeze_count())

    gc.unfreeze()
    try:
        ok, _ = await _run(_items(12), send, 4, Console(file=io.StringIO()), in_flight=1)
        assert ok == 12
        assert frozen_at_each_write[0] == 0 and all(count > 0 for count in frozen_at_each_write[1:])
    finally:
        gc.unfreeze()


async def test_a_failed_batch_stops_the_ingest_with_its_error() -> None:
    async def send(documents: list[Document]) -> None:
        if any(d.id == "doc5" for d in documents):
            raise RuntimeError("the server answered 500")

    with pytest.raises(RuntimeError, match="500"):
        await _run(_items(20), send, 4, Console(file=io.StringIO()), in_flight=2)


def _sync(runner: CliRunner, docs: Path, *target: str) -> str:
    result = runner.invoke(app, ["ingest", "--sync", str(docs), *target])
    assert result.exit_code == 0, result.output
    return result.output


def test_sync_skips_unchanged_replaces_changed_and_deletes_vanished_files(tmp_path: Path) -> None:
    docs, data_dir = write_corpus(tmp_path), tmp_path / "data"
    (docs / "moon.txt").write_text("The moon has no air.")
    other = tmp_path / "other"
    other.mkdir()
    (other / "kept.txt").write_text("Another folder's note stays.")
    runner = CliRunner()
    target = ("--data-dir", str(data_dir))
    assert "sync: 1 added" in _sync(runner, other, *target)
    assert "sync: 3 added, 0 updated, 0 unchanged, 0 deleted, 0 failed" in _sync(runner, docs, *target)

    assert "sync: 0 added, 0 updated, 3 unchanged, 0 deleted, 0 failed" in _sync(runner, docs, *target)

    (docs / "tides.txt").write_text("Tides follow the moon and, less, the sun.")
    (docs / "moon.txt").unlink()
    (docs / "new.md").write_text("# A new note")
    assert "sync: 1 added, 1 updated, 1 unchanged, 1 deleted, 0 failed" in _sync(runner, docs, *target)
    assert stored_chunks(data_dir) == 4  # tides, notes n1, new, and the other folder's note


def test_sync_never_deletes_the_documents_of_a_file_that_failed_to_read(tmp_path: Path) -> None:
    docs, data_dir = write_corpus(tmp_path), tmp_path / "data"
    runner = CliRunner()
    _sync(runner, docs, "--data-dir", str(data_dir))
    (docs / "notes.jsonl").write_text("{broken json\n")
    result = runner.invoke(app, ["ingest", "--sync", str(docs), "--data-dir", str(data_dir)])
    assert result.exit_code == 1
    assert "0 deleted, 1 failed" in result.output and "notes.jsonl:1" in result.output
    assert stored_chunks(data_dir) == 2


@pytest.mark.slow
def test_sync_into_a_running_server_only_sends_the_changes(tmp_path: Path) -> None:
    docs = write_corpus(tmp_path)
    server = PluginServer("retrieval", "--data-dir", str(tmp_path / "server")).start(timeout=240)  # busy machines
    try:

        def sync() -> str:
            done = subprocess.run(
                [sys.executable, "-m", "plugkit", "ingest", "--sync", str(docs), "--url", server.base_url],
                env=server.env,
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        assert "2 added" in sync()
        (docs / "tides.txt").unlink()
        assert "0 added, 0 updated, 1 unchanged, 1 deleted" in sync()
        listed = httpx.get(f"{server.base_url}/documents").json()["documents"]
        assert [d["metadata"]["source_id"] for d in listed] == ["docs/notes.jsonl#n1"]
    finally:
        server.stop()


def test_a_cuda_embedder_gets_writes_of_at_least_its_gpu_batch_and_others_keep_the_default() -> None:
    assert documents_per_write(LocalEmbedder(device="cuda")) == 2048
    assert documents_per_write(LocalEmbedder(device="cuda", batch_size=4096)) == 4096
    assert documents_per_write(LocalEmbedder(device="cuda", batch_size=16)) == DEFAULT_BATCH_SIZE
    assert documents_per_write(LocalEmbedder(device="cpu")) == DEFAULT_BATCH_SIZE == 128
    openai = OpenAIEmbedder("http://127.0.0.1:9", None, "text-embedding-3-small", 1536)
    assert documents_per_write(openai) == DEFAULT_BATCH_SIZE


def test_a_cuda_embedder_gets_all_cores_but_six_to_chunk_and_others_chunk_in_the_loops_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert chunk_workers(LocalEmbedder(device="cuda")) == 10
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert chunk_workers(LocalEmbedder(device="cuda")) == 1
    assert chunk_workers(LocalEmbedder(device="cpu")) == 0
    assert chunk_workers(OpenAIEmbedder("http://127.0.0.1:9", None, "text-embedding-3-small", 1536)) == 0


@pytest.mark.parametrize(("device", "per_write", "in_flight"), [("cpu", 128, 3), ("cuda", 2048, 6)])
async def test_the_local_store_writes_as_many_documents_at_once_as_its_embedders_device_suits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str, per_write: int, in_flight: int
) -> None:
    monkeypatch.setenv("PLUGKIT_EMBED_DEVICE", device)  # the model is not loaded: only the store opens
    _send, close, _listing, _delete, found = await _local_target(tmp_path)
    try:
        assert found == (per_write, in_flight)
    finally:
        await close()


@pytest.mark.parametrize(
    ("device", "setting", "training"),
    [("cuda", None, "at_close"), ("cpu", None, "background"), ("cuda", "background", "background")],
)
async def test_the_local_store_trains_its_ivf_index_at_the_close_when_the_model_runs_on_a_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str, setting: str | None, training: str
) -> None:
    monkeypatch.setenv("PLUGKIT_EMBED_DEVICE", device)  # the model is not loaded: only the store opens
    if setting:
        monkeypatch.setenv("PLUGKIT_ANN_TRAINING", setting)
    _send, close, _listing, _delete, _pace = await _local_target(tmp_path)
    try:
        store = close.__self__.store  # type: ignore[attr-defined]
        assert store.ann_training == training
    finally:
        await close()


async def test_documents_read_as_they_come_are_sent_before_the_last_is_read() -> None:
    """A generator of documents (the command's files, parsed as it goes): each batch is on its way before the next
    document is read, and every document arrives once."""
    events: list[str] = []

    def documents() -> Iterator[Item]:
        for item in _items(20):
            events.append(f"read {item.origin}")
            yield item

    async def send(batch: list[Document]) -> None:
        events.append(f"sent {batch[0].id}")
        await asyncio.sleep(0.01)

    ok, failed = await _run(documents(), send, 4, Console(file=io.StringIO()), in_flight=2)
    assert (ok, failed) == (20, 0)
    assert events.index("sent doc0") < events.index("read doc4")
    assert events.index("sent doc4") < events.index("read doc8")
    assert sorted(e for e in events if e.startswith("sent")) == sorted(f"sent doc{i}" for i in range(0, 20, 4))
