from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from plugkit.plugins.retrieval.filters import Comparison
from plugkit.plugins.retrieval.models import DocumentChunk, DocumentChunkMetadata, DocumentMetadataFilter, Source
from plugkit.plugins.retrieval.stores.base import (
    ChunkRecord,
    DocumentRecord,
    SearchRequest,
    StoreInfo,
    StoreMismatchError,
)
from plugkit.plugins.retrieval.stores.embedded import EmbeddedStore

DIM = 8
INFO = StoreInfo(embedding_model="test-model", dimension=DIM)


def unit(seed: int) -> list[float]:
    vector = np.random.default_rng(seed).normal(size=DIM)
    return (vector / np.linalg.norm(vector)).tolist()  # type: ignore[no-any-return]


def document(doc_id: str, texts: list[str], seed: int = 0, **metadata: object) -> DocumentRecord:
    meta = DocumentChunkMetadata(document_id=doc_id, **metadata)  # type: ignore[arg-type]
    return DocumentRecord(
        doc_id,
        [
            ChunkRecord.of(DocumentChunk(id=f"{doc_id}_{n}", text=t, metadata=meta), unit(seed * 1000 + n))
            for n, t in enumerate(texts)
        ],
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    s = EmbeddedStore(tmp_path / "store")
    await s.open(INFO)
    yield s
    await s.close()


async def test_a_document_is_returned_with_its_chunks_in_order(store: EmbeddedStore) -> None:
    await store.replace_documents([document("d1", ["first part", "second part", "third part"])])
    chunks = await store.get_document("d1")
    assert [c.id for c in chunks] == ["d1_0", "d1_1", "d1_2"]
    assert [c.text for c in chunks] == ["first part", "second part", "third part"]
    assert all(c.metadata.document_id == "d1" for c in chunks)


async def test_re_upserting_replaces_every_old_chunk(store: EmbeddedStore) -> None:
    await store.replace_documents([document("d1", ["old a", "old b", "old c"])])
    await store.replace_documents([document("d1", ["new only"], seed=5)])
    assert [c.text for c in await store.get_document("d1")] == ["new only"]
    hits = await store.search(SearchRequest(text="old", embedding=unit(0), top_k=10, mode="dense"))
    assert [h.id for h in hits] == ["d1_0"] and hits[0].text == "new only"
    assert await store.search(SearchRequest(text="old", embedding=None, mode="keyword")) == []


async def test_dense_search_returns_the_nearest_chunk_first_with_descending_scores(store: EmbeddedStore) -> None:
    await store.replace_documents([document(f"d{i}", [f"text {i}"], seed=i) for i in range(20)])
    hits = await store.search(SearchRequest(text="", embedding=unit(7000), top_k=5, mode="dense"))
    assert hits[0].id == "d7_0"
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


async def test_keyword_search_ranks_by_bm25_higher_is_better(store: EmbeddedStore) -> None:
    await store.replace_documents(
        [
            document("a", ["the zebra eats grass in the savanna"], seed=1),
            document("b", ["zebra zebra zebra stripes"], seed=2),
            document("c", ["nothing to see here"], seed=3),
        ]
    )
    hits = await store.search(SearchRequest(text="zebra?", embedding=None, top_k=5, mode="keyword"))
    assert [h.id for h in hits] == ["b_0", "a_0"]
    assert hits[0].score > hits[1].score


async def test_keyword_queries_with_fts_syntax_are_taken_literally(store: EmbeddedStore) -> None:
    await store.replace_documents([document("a", ['he said "NEAR" and AND OR NOT'], seed=1)])
    hits = await store.search(SearchRequest(text='"NEAR(and* OR -', embedding=None, mode="keyword"))
    assert [h.id for h in hits] == ["a_0"]
    assert await store.search(SearchRequest(text="?!", embedding=None, mode="keyword")) == []


async def test_hybrid_search_fuses_both_rankings(store: EmbeddedStore) -> None:
    await store.replace_documents(
        [
            document("kw", ["unique keyword platypus"], seed=1),
            document("dense", ["unrelated words"], seed=2),
            document("other", ["more filler"], seed=3),
        ]
    )
    hits = await store.search(SearchRequest(text="platypus", embedding=unit(2000), top_k=3, mode="hybrid"))
    top_two = {h.id for h in hits[:2]}
    assert top_two == {"kw_0", "dense_0"}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


async def test_filtered_dense_search_still_returns_top_k_matches(store: EmbeddedStore) -> None:
    docs = [document(f"d{i}", [f"text {i}"], seed=i, author="rare" if i % 10 == 0 else "common") for i in range(50)]
    await store.replace_documents(docs)
    flt = DocumentMetadataFilter(author="rare")
    for mode in ("dense", "hybrid"):
        hits = await store.search(SearchRequest(text="text", embedding=unit(1), top_k=5, mode=mode, filter=flt))  # type: ignore[arg-type]
        assert len(hits) == 5 and all(h.metadata.author == "rare" for h in hits)


async def test_every_filter_field_restricts_the_results(store: EmbeddedStore) -> None:
    await store.replace_documents(
        [
            document(
                "a", ["alpha"], seed=1, source=Source.email, source_id="m1", url="https://a", created_at="2024-01-10"
            ),
            document(
                "b", ["alpha"], seed=2, source=Source.chat, source_id="m2", url="https://b", created_at="2024-03-01"
            ),
        ]
    )

    async def ids(**fields: str) -> list[str]:
        flt = DocumentMetadataFilter(**fields)  # type: ignore[arg-type]
        hits = await store.search(SearchRequest(text="alpha", embedding=unit(1), top_k=10, mode="keyword", filter=flt))
        return sorted(h.metadata.document_id or "" for h in hits)

    assert await ids(source="email") == ["a"]
    assert await ids(source_id="m2") == ["b"]
    assert await ids(url="https://b") == ["b"]
    assert await ids(document_id="a") == ["a"]
    assert await ids(start_date="2024-02-01") == ["b"]
    assert await ids(end_date="2024-02-01T00:00:00Z") == ["a"]
    assert await ids(start_date="2024-01-01", end_date="2024-12-31") == ["a", "b"]


async def test_tenants_see_fetch_and_delete_only_their_own_chunks(store: EmbeddedStore) -> None:
    await store.replace_documents([document("same-id", ["alice's secret"], seed=1)], tenant="alice")
    await store.replace_documents([document("same-id", ["bob's secret"], seed=2)], tenant="bob")
    alice = await store.search(SearchRequest(text="secret", embedding=unit(2000), top_k=10, tenant="alice"))
    assert [h.text for h in alice] == ["alice's secret"]
    assert [c.text for c in await store.get_document("same-id", tenant="bob")] == ["bob's secret"]
    assert await store.get_document("same-id") == []
    await store.delete(delete_all=True, tenant="alice")
    assert await store.count("alice") == 0 and await store.count("bob") == 1


async def test_delete_by_ids_filter_and_all_reports_the_chunks_removed(store: EmbeddedStore) -> None:
    await store.replace_documents(
        [
            document("a", ["one", "two"], seed=1, author="x"),
            document("b", ["three"], seed=2, author="y"),
            document("c", ["four"], seed=3, author="y"),
        ]
    )
    assert await store.delete(ids=["a", "missing"]) == 2
    assert await store.delete(filter=DocumentMetadataFilter(author="y", document_id="b")) == 1
    assert await store.count() == 1
    assert await store.delete(delete_all=True) == 1
    assert await store.count() == 0
    assert await store.search(SearchRequest(text="four", embedding=unit(3000), mode="hybrid")) == []


async def test_writes_survive_a_reopen(tmp_path: Path) -> None:
    first = EmbeddedStore(tmp_path / "s")
    await first.open(INFO)
    await first.replace_documents([document("d", ["kept text"], seed=4)])
    await first.close()
    second = EmbeddedStore(tmp_path / "s")
    await second.open(INFO)
    hits = await second.search(SearchRequest(text="kept", embedding=unit(4000), top_k=1))
    assert [h.id for h in hits] == ["d_0"]
    await second.close()


async def test_a_missing_vector_index_is_rebuilt_from_sqlite(tmp_path: Path) -> None:
    first = EmbeddedStore(tmp_path / "s")
    await first.open(INFO)
    await first.replace_documents([document(f"d{i}", [f"t{i}"], seed=i) for i in range(5)])
    await first.close()
    (tmp_path / "s" / "vectors.npz").unlink()
    second = EmbeddedStore(tmp_path / "s")
    await second.open(INFO)
    hits = await second.search(SearchRequest(text="", embedding=unit(3000), top_k=1, mode="dense"))
    assert [h.id for h in hits] == ["d3_0"]
    await second.close()


async def test_an_index_snapshot_behind_the_database_is_caught_up(tmp_path: Path) -> None:
    first = EmbeddedStore(tmp_path / "s")
    await first.open(INFO)
    await first.replace_documents([document("early", ["e"], seed=1)])
    await first.close()  # snapshot now reflects "early" only
    # Writes acknowledged by a process that then died without saving its snapshot:
    crashed = EmbeddedStore(tmp_path / "s")
    await crashed.open(INFO)
    await crashed.replace_documents([document("late", ["l"], seed=2)])
    await crashed.delete(ids=["early"])
    assert crashed._conn is not None
    crashed._conn.close()  # no close(): the snapshot on disk is stale
    reopened = EmbeddedStore(tmp_path / "s")
    await reopened.open(INFO)
    hits = await reopened.search(SearchRequest(text="", embedding=unit(2000), top_k=10, mode="dense"))
    assert [h.id for h in hits] == ["late_0"]
    await reopened.close()


async def test_writes_of_another_process_are_seen_by_a_running_store(tmp_path: Path) -> None:
    reader, writer = EmbeddedStore(tmp_path / "s"), EmbeddedStore(tmp_path / "s")
    await reader.open(INFO)
    await writer.open(INFO)
    await writer.replace_documents([document("w", ["written elsewhere"], seed=9)])
    hits = await reader.search(SearchRequest(text="elsewhere", embedding=unit(9000), top_k=1, mode="dense"))
    assert [h.id for h in hits] == ["w_0"]
    await writer.close()
    await reader.close()


async def test_a_failed_document_write_leaves_nothing_half_written(store: EmbeddedStore) -> None:
    await store.replace_documents([document("d", ["original"], seed=1)])
    bad = DocumentRecord(
        "d",
        [
            ChunkRecord.of(
                DocumentChunk(id="d_0", text="new", metadata=DocumentChunkMetadata(document_id="d")), unit(1)
            ),
            ChunkRecord.of(
                DocumentChunk(id="d_1", text="new 2", metadata=DocumentChunkMetadata(document_id="d")), [0.0] * 3
            ),
        ],
    )
    with pytest.raises(ValueError, match="dimension"):
        await store.replace_documents([bad])
    assert [c.text for c in await store.get_document("d")] == ["original"]


async def test_opening_with_another_model_or_dimension_is_refused(tmp_path: Path) -> None:
    first = EmbeddedStore(tmp_path / "s")
    await first.open(INFO)
    await first.close()
    for other in (StoreInfo("other-model", DIM), StoreInfo("test-model", DIM * 2)):
        with pytest.raises(StoreMismatchError, match="test-model"):
            await EmbeddedStore(tmp_path / "s").open(other)


async def test_every_write_is_in_sqlite_before_it_returns(store: EmbeddedStore) -> None:
    await store.replace_documents([document("d", ["durable"], seed=1)])
    with sqlite3.connect(store.db_path) as other:
        assert other.execute("SELECT COUNT(*) FROM chunks WHERE document_id = 'd'").fetchone()[0] == 1
        row = other.execute("SELECT text FROM chunks WHERE document_id = 'd'").fetchone()
        assert row == ("durable",)


async def test_search_can_return_the_stored_embeddings(store: EmbeddedStore) -> None:
    await store.replace_documents([document("d", ["x"], seed=1)])
    hits = await store.search(SearchRequest(text="x", embedding=unit(1000), include_embeddings=True))
    assert hits[0].embedding == pytest.approx(unit(1000), abs=1e-6)


async def test_closing_trims_the_change_log_and_a_store_left_behind_rebuilds(tmp_path: Path) -> None:
    behind, writer = EmbeddedStore(tmp_path / "s"), EmbeddedStore(tmp_path / "s")
    await behind.open(INFO)
    await writer.open(INFO)
    await writer.replace_documents([document("a", ["first"], seed=1), document("b", ["second"], seed=2)])
    await writer.delete(ids=["a"])
    await writer.close()
    with sqlite3.connect(tmp_path / "s" / "retrieval.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0] == 0
    hits = await behind.search(SearchRequest(text="", embedding=unit(1000), top_k=10, mode="dense"))
    assert [h.id for h in hits] == ["b_0"]
    await behind.replace_documents([document("c", ["third"], seed=3)])
    hits = await behind.search(SearchRequest(text="", embedding=unit(3000), top_k=10, mode="dense"))
    assert [h.id for h in hits][0] == "c_0" and len(hits) == 2
    await behind.close()
    reopened = EmbeddedStore(tmp_path / "s")
    await reopened.open(INFO)
    assert await reopened.count() == 2
    hits = await reopened.search(SearchRequest(text="", embedding=unit(2000), top_k=1, mode="dense"))
    assert [h.id for h in hits] == ["b_0"]
    await reopened.close()


async def test_readers_never_see_a_mix_of_old_and_new_chunks(store: EmbeddedStore) -> None:
    import asyncio

    def version(v: int) -> DocumentRecord:
        return document("doc", [f"version {v} part {n}" for n in range(5 + v % 3)], seed=v)

    await store.replace_documents([version(0)])
    seen: list[set[str]] = []

    async def writer() -> None:
        for v in range(1, 30):
            await store.replace_documents([version(v)])

    async def reader() -> None:
        for _ in range(60):
            chunks = await store.get_document("doc")
            seen.append({c.text.split(" part ")[0] for c in chunks})
            hits = await store.search(SearchRequest(text="version", embedding=None, top_k=20, mode="keyword"))
            seen.append({h.text.split(" part ")[0] for h in hits})

    await asyncio.gather(writer(), reader(), reader())
    assert all(len(versions) == 1 for versions in seen)


def refuse_document(store: EmbeddedStore, document_id: str) -> None:
    """Make SQLite itself fail the insert of `document_id`'s chunks, on the store's writing connection."""
    store.conn.execute(
        f"CREATE TEMP TRIGGER refuse BEFORE INSERT ON chunks WHEN NEW.document_id = '{document_id}'"
        " BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )


async def test_a_call_of_many_documents_writes_all_or_nothing_when_sqlite_fails_mid_way(store: EmbeddedStore) -> None:
    await store.replace_documents([document("d1", ["old one"], seed=1)])
    with sqlite3.connect(store.db_path) as other:
        log_before = other.execute("SELECT COUNT(*) FROM changes").fetchone()[0]
    refuse_document(store, "d3")
    call = [document(f"d{i}", [f"new {i} a", f"new {i} b"], seed=10 + i) for i in range(1, 6)]
    with pytest.raises(sqlite3.IntegrityError, match="refused"):
        await store.replace_documents(call)
    assert await store.count() == 1
    assert [c.text for c in await store.get_document("d1")] == ["old one"]
    with sqlite3.connect(store.db_path) as other:
        assert other.execute("SELECT COUNT(*) FROM changes").fetchone()[0] == log_before
    hits = await store.search(SearchRequest(text="new", embedding=unit(11000), top_k=10, mode="hybrid"))
    assert [h.id for h in hits] == ["d1_0"]
    store.conn.execute("DROP TRIGGER refuse")
    await store.replace_documents(call)
    assert await store.count() == 10
    for i in range(1, 6):
        hits = await store.search(SearchRequest(text="", embedding=unit((10 + i) * 1000), top_k=1, mode="dense"))
        assert [h.id for h in hits] == [f"d{i}_0"]


async def test_a_call_larger_than_one_transaction_commits_whole_documents_only(
    store: EmbeddedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("plugkit.plugins.retrieval.stores.embedded.WRITE_BATCH_CHUNKS", 3)
    refuse_document(store, "d4")
    call = [document(f"d{i}", [f"part {i} a", f"part {i} b"], seed=i) for i in range(1, 6)]
    with pytest.raises(sqlite3.IntegrityError):
        await store.replace_documents(call)
    # Two chunks a document, three at most a transaction: d1, d2 and d3 went in before d4's transaction failed.
    for i in range(1, 6):
        assert len(await store.get_document(f"d{i}")) == (2 if i < 4 else 0)
    store.conn.execute("DROP TRIGGER refuse")
    await store.replace_documents(call)
    hits = await store.search(SearchRequest(text="part", embedding=None, top_k=20, mode="keyword"))
    assert sorted(h.id for h in hits) == sorted(f"d{i}_{n}" for i in range(1, 6) for n in range(2))


async def test_two_stores_on_one_file_writing_alternately_index_every_chunk_once(tmp_path: Path) -> None:
    first, second = EmbeddedStore(tmp_path / "s"), EmbeddedStore(tmp_path / "s")
    await first.open(INFO)
    await second.open(INFO)
    expected: dict[str, int] = {}  # document id -> the seed of its current vectors
    for round_ in range(6):
        writer = first if round_ % 2 == 0 else second
        # Each round replaces one document the other store wrote and adds two new ones.
        ids = [f"r{round_}a", f"r{round_}b"] + ([f"r{round_ - 1}a"] if round_ else [])
        await writer.replace_documents([document(i, [f"{i} text", f"{i} more"], seed=100 + round_) for i in ids])
        expected.update(dict.fromkeys(ids, 100 + round_))
    for store in (first, second):
        assert await store.count() == 2 * len(expected)
        every = await store.search(SearchRequest(text="", embedding=unit(0), top_k=100, mode="dense"))
        assert sorted(h.id for h in every) == sorted(f"{i}_{n}" for i in expected for n in range(2))
        for document_id, seed in expected.items():
            hits = await store.search(SearchRequest(text="", embedding=unit(seed * 1000), top_k=len(expected) * 2))
            assert f"{document_id}_0" in {h.id for h in hits[: 2 * len(ids)]}
            found = await store.search(SearchRequest(text=f"{document_id}", embedding=None, top_k=2, mode="keyword"))
            assert {h.id for h in found} == {f"{document_id}_0", f"{document_id}_1"}
    with sqlite3.connect(tmp_path / "s" / "retrieval.db") as conn:
        added = conn.execute("SELECT chunk_rowid FROM changes WHERE op = 1 ORDER BY seq").fetchall()
        rowids = conn.execute("SELECT rowid FROM chunks ORDER BY rowid").fetchall()
        # Every stored chunk was logged as added exactly once, and rowids are never reused.
        assert set(rowids) <= set(added) and len(added) == len(set(added))
    await first.close()
    await second.close()


async def test_the_keyword_index_finds_documents_right_after_they_are_written(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s")
    await store.open(INFO)
    for i in range(5):
        await store.replace_documents([document(f"d{i}", [f"walrus number {i}"], seed=i)])
        hits = await store.search(SearchRequest(text="walrus", embedding=None, top_k=10, mode="keyword"))
        assert sorted(h.id for h in hits) == [f"d{j}_0" for j in range(i + 1)]
    await store.close()
    reopened = EmbeddedStore(tmp_path / "s")
    await reopened.open(INFO)
    hits = await reopened.search(SearchRequest(text="walrus", embedding=None, top_k=10, mode="keyword"))
    assert len(hits) == 5
    await reopened.close()


async def test_a_document_given_twice_in_one_call_is_stored_as_its_last_version(store: EmbeddedStore) -> None:
    await store.replace_documents([document("d", ["first version"], seed=1), document("d", ["second", "third"])])
    assert [c.text for c in await store.get_document("d")] == ["second", "third"]
    assert await store.count() == 2


async def test_a_replaced_document_keeps_the_time_it_was_first_stored(store: EmbeddedStore) -> None:
    await store.replace_documents([document("d", ["v1"], seed=1)])
    first = (await store.list_documents()).documents[0]
    await store.replace_documents([document("d", ["v2", "v2 more"], seed=2), document("e", ["new"], seed=3)])
    entries = {e.document_id: e for e in (await store.list_documents()).documents}
    assert entries["d"].stored_ts == first.stored_ts
    assert entries["d"].updated_ts >= first.updated_ts and entries["d"].chunk_count == 2
    assert entries["e"].stored_ts == entries["e"].updated_ts


async def test_chunks_of_one_document_with_different_metadata_each_keep_their_own(store: EmbeddedStore) -> None:
    chunks = [
        ChunkRecord.of(
            DocumentChunk(id=f"d_{n}", text=f"text {n}", metadata=DocumentChunkMetadata(author=author, team=team)),
            unit(n),
        )
        for n, (author, team) in enumerate([("ada", "infra"), ("ada", "infra"), ("bob", "web")])
    ]
    await store.replace_documents([DocumentRecord("d", chunks)])
    stored = await store.get_document("d")
    assert [(c.metadata.author, c.metadata.custom, c.metadata.document_id) for c in stored] == [
        ("ada", {"team": "infra"}, "d"),
        ("ada", {"team": "infra"}, "d"),
        ("bob", {"team": "web"}, "d"),
    ]
    for key, value, wanted in (("author", "bob", ["d_2"]), ("team", "infra", ["d_0", "d_1"])):
        filter_ = Comparison(key=key, type="eq", value=value)
        hits = await store.search(SearchRequest(text="text", embedding=unit(0), top_k=10, filter=filter_))
        assert sorted(h.id for h in hits) == wanted


async def test_writes_reach_the_database_file_from_the_wal_before_the_store_closes(store: EmbeddedStore) -> None:
    import asyncio

    empty = store.db_path.stat().st_size
    await store.replace_documents([document(f"d{i}", ["words " * 300] * 4, seed=i) for i in range(50)])
    wal = store.db_path.with_name(store.db_path.name + "-wal")
    assert wal.stat().st_size > 200 * 1800  # the write itself went to the WAL only
    for _ in range(100):  # the background checkpoint copies it into the database file
        if store.db_path.stat().st_size > empty + 200 * 1800:
            break
        await asyncio.sleep(0.05)
    assert store.db_path.stat().st_size > empty + 200 * 1800


async def test_readers_see_every_document_of_a_call_in_the_same_version(tmp_path: Path) -> None:
    import asyncio

    def call(v: int) -> list[DocumentRecord]:
        return [document(name, [f"version {v} of {name} part {n}" for n in range(2 + v % 3)], seed=v) for name in "ab"]

    writing, reading = EmbeddedStore(tmp_path / "s"), EmbeddedStore(tmp_path / "s")  # as two workers
    await writing.open(INFO)
    await reading.open(INFO)
    await writing.replace_documents(call(0))
    seen: list[set[str]] = []

    async def writer() -> None:
        for v in range(1, 25):
            await writing.replace_documents(call(v))

    async def reader() -> None:
        for _ in range(40):
            for mode in ("keyword", "dense"):
                request = SearchRequest(text="version", embedding=unit(0), top_k=20, mode=mode)  # type: ignore[arg-type]
                hits = await reading.search(request)
                assert {h.text.split(" of ")[1].split()[0] for h in hits} == {"a", "b"}
                seen.append({h.text.split(" of ")[0] for h in hits})

    await asyncio.gather(writer(), reader(), reader())
    assert all(len(versions) == 1 for versions in seen)
    await writing.close()
    await reading.close()


async def test_kept_listings_and_documents_follow_every_write_of_this_or_another_store_on_the_directory(
    tmp_path: Path,
) -> None:
    mine, other = EmbeddedStore(tmp_path / "shared"), EmbeddedStore(tmp_path / "shared")
    await mine.open(INFO)
    await other.open(INFO)
    try:
        await mine.replace_documents([document("d1", ["first"])])
        assert [e.document_id for e in (await mine.list_documents()).documents] == ["d1"]
        assert [c.text for c in await mine.get_document("d1")] == ["first"]
        await other.replace_documents([document("d2", ["second"]), document("d1", ["changed"], seed=3)])
        assert sorted(e.document_id for e in (await mine.list_documents()).documents) == ["d1", "d2"]
        assert [c.text for c in await mine.get_document("d1")] == ["changed"]
        await mine.delete(ids=["d1"])
        assert await mine.get_document("d1") == [] and await other.get_document("d1") == []
        assert [e.document_id for e in (await mine.list_documents()).documents] == ["d2"]
        chunks = await mine.get_document("d2")
        chunks.clear()  # a caller's change to its answer is not the next caller's
        assert [c.text for c in await mine.get_document("d2")] == ["second"]
    finally:
        await mine.close()
        await other.close()


async def test_a_reopened_store_keeps_nothing_from_before(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store")
    await store.open(INFO)
    await store.replace_documents([document("d1", ["first"])])
    assert [c.text for c in await store.get_document("d1")] == ["first"]
    await store.close()
    with sqlite3.connect(tmp_path / "store" / "retrieval.db") as conn:  # changed while closed, by hand
        conn.execute("UPDATE chunks SET text = 'edited' WHERE document_id = 'd1'")
    await store.open(INFO)
    try:
        assert [c.text for c in await store.get_document("d1")] == ["edited"]
    finally:
        await store.close()


async def test_chunk_rows_split_over_several_insert_statements_keep_their_own_text_and_vector(
    store: EmbeddedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("plugkit.plugins.retrieval.stores.embedded.ROWS_PER_INSERT", 3)  # 11 chunks: 4 statements
    call = [document(f"d{i}", [f"doc {i} part {n}" for n in range(1 + i % 3)], seed=i) for i in range(7)]
    await store.replace_documents(call)
    for record in call:
        for chunk in record.chunks:
            hits = await store.search(SearchRequest(text="", embedding=chunk.embedding, top_k=1, mode="dense"))
            assert [(h.id, h.text) for h in hits] == [(chunk.id, chunk.text)]
    # Replaced: the old rows leave (their removals logged in one statement per part), the new ones are found.
    await store.replace_documents([document(f"d{i}", [f"new {i}"], seed=100 + i) for i in range(7)])
    assert await store.count() == 7
    hits = await store.search(SearchRequest(text="part", embedding=None, top_k=20, mode="keyword"))
    assert hits == []
    hits = await store.search(SearchRequest(text="new", embedding=None, top_k=20, mode="keyword"))
    assert sorted(h.id for h in hits) == [f"d{i}_0" for i in range(7)]


async def test_the_close_catches_the_keyword_index_up_in_the_background_process_while_it_saves_the_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from plugkit.plugins.retrieval.stores import embedded
    from plugkit.plugins.retrieval.stores.vector_index import ExactIndex

    began, returned = threading.Event(), threading.Event()
    catch_up_elsewhere = embedded.catch_up_elsewhere

    def watched(*args: object, **kwargs: object) -> int:
        began.set()
        try:
            return catch_up_elsewhere(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            returned.set()

    monkeypatch.setattr(embedded, "catch_up_elsewhere", watched)
    store = EmbeddedStore(tmp_path / "s")
    await store.open(INFO)
    await store.replace_documents([document("d0", ["walrus zero"], seed=0)])  # the background thread catches up
    assert returned.wait(30)
    began.clear()
    monkeypatch.setattr(store, "_keywords_behind", lambda: None)  # the next write leaves its catch-up to the close
    await store.replace_documents([document("d1", ["walrus one"], seed=1)])

    save = ExactIndex.save
    began_while_saving: list[bool] = []

    def held_save(self: ExactIndex, *args: object, **kwargs: object) -> None:
        began_while_saving.append(began.wait(10))
        save(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ExactIndex, "save", held_save)
    await store.close()
    assert began_while_saving == [True]
    with sqlite3.connect(tmp_path / "s" / "retrieval.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0] == 0  # both indexes held everything
    monkeypatch.undo()
    reopened = EmbeddedStore(tmp_path / "s")
    await reopened.open(INFO)
    hits = await reopened.search(SearchRequest(text="walrus", embedding=None, top_k=10, mode="keyword"))
    assert sorted(h.id for h in hits) == ["d0_0", "d1_0"]
    await reopened.close()
