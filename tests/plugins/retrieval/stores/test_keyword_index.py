"""The tantivy keyword index as the embedded store keeps it: BM25 search, filters, and derived from SQLite."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from plugkit.plugins.retrieval.models import DocumentMetadataFilter, Source
from plugkit.plugins.retrieval.stores import keyword_index
from plugkit.plugins.retrieval.stores.base import SearchRequest
from plugkit.plugins.retrieval.stores.embedded import EmbeddedStore
from plugkit.plugins.retrieval.stores.keyword_index import KeywordIndex
from tests.plugins.retrieval.stores.test_embedded import INFO, document, unit


def keyword(text: str, top_k: int = 10, **filters: object) -> SearchRequest:
    flt = DocumentMetadataFilter(**filters) if filters else None  # type: ignore[arg-type]
    return SearchRequest(text=text, embedding=None, top_k=top_k, mode="keyword", filter=flt)


async def die(store: EmbeddedStore) -> None:
    """The process dies here: its background keyword thread and its connection go with it (no close())."""
    await asyncio.to_thread(store._stop_keyword_thread)
    store._conn.close()  # type: ignore[union-attr]


async def settle(store: EmbeddedStore) -> None:
    """A search, which brings the keyword index up to the writes first (they leave it to the background)."""
    await store.search(keyword("settle"))


def test_query_terms_are_stemmed_lower_cased_folded_and_stop_words_dropped(tmp_path: Path) -> None:
    index = KeywordIndex(tmp_path)
    assert index.terms("Does the Café REDUCE fractures? reduces") == ["doe", "cafe", "reduc", "fractur"]
    assert index.terms("... the of") == []


async def test_keyword_search_matches_inflected_forms(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s")
    await store.open(INFO)
    await store.replace_documents([document("a", ["vitamin D reduced fractures"]), document("b", ["cats purr"])])
    hits = await store.search(keyword("does vitamin d reduce a fracture"))
    assert [h.id for h in hits] == ["a_0"]
    await store.close()


async def test_a_filtered_keyword_search_keeps_filling_top_k_past_better_unfiltered_hits(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s")
    await store.open(INFO)
    # 300 chunks that rank above every allowed one (the word three times), then 5 allowed ones further down.
    strong = [document(f"s{i}", ["zebra zebra zebra"], seed=i, source=Source.chat) for i in range(300)]
    weak = [
        document(f"w{i}", [f"zebra and {' other words' * 20}"], seed=500 + i, source=Source.email) for i in range(5)
    ]
    await store.replace_documents(strong + weak)
    hits = await store.search(keyword("zebra", top_k=4, source="email"))
    assert len(hits) == 4 and all(h.id.startswith("w") for h in hits)
    assert len(await store.search(keyword("zebra", top_k=50, source="email"))) == 5
    unfiltered = await store.search(keyword("zebra", top_k=50))
    assert len(unfiltered) == 50 and all(h.id.startswith("s") for h in unfiltered)
    await store.close()


async def test_a_large_filter_is_applied_after_the_search_and_still_fills_top_k(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyword_index, "SMALL_FILTER", 50)  # fewer allowed rows than this are named in the query
    store = EmbeddedStore(tmp_path / "s")
    await store.open(INFO)
    docs = [
        document(f"d{i}", [("zebra " * (1 + i % 7)) + "grass"], seed=i, source=Source.email if i % 3 else Source.file)
        for i in range(600)  # 200 allowed
    ]
    await store.replace_documents(docs)
    hits = await store.search(keyword("zebra", top_k=30, source="file"))
    assert len(hits) == 30
    assert all(int(h.id[1:].split("_")[0]) % 3 == 0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    await store.close()


async def test_a_missing_keyword_index_is_rebuilt_from_sqlite(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s")
    await store.open(INFO)
    await store.replace_documents([document("a", ["heron by the lake"]), document("b", ["owl in the barn"])])
    await store.close()
    shutil.rmtree(tmp_path / "s" / "keywords")
    again = EmbeddedStore(tmp_path / "s")
    await again.open(INFO)
    assert [h.id for h in await again.search(keyword("owl"))] == ["b_0"]
    await again.close()


async def test_an_unreadable_keyword_index_is_rebuilt(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s")
    await store.open(INFO)
    await store.replace_documents([document("a", ["heron by the lake"])])
    await store.close()
    (tmp_path / "s" / "keywords" / "meta.json").write_text("{not json")
    again = EmbeddedStore(tmp_path / "s")
    await again.open(INFO)
    assert [h.id for h in await again.search(keyword("heron"))] == ["a_0"]
    await again.close()


async def test_a_keyword_index_left_behind_by_a_crash_is_caught_up(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s")
    await store.open(INFO)
    await store.replace_documents([document("a", ["heron by the lake"])])
    await settle(store)
    old = tmp_path / "old-keywords"
    shutil.copytree(tmp_path / "s" / "keywords", old)
    await store.replace_documents([document("a", ["kingfisher by the river"]), document("b", ["owl in the barn"])])
    await settle(store)
    # The process dies here: SQLite has the writes, the keyword index on disk is the older copy.
    await die(store)
    shutil.rmtree(tmp_path / "s" / "keywords")
    shutil.copytree(old, tmp_path / "s" / "keywords")
    again = EmbeddedStore(tmp_path / "s")
    await again.open(INFO)
    assert await again.search(keyword("heron")) == []
    assert [h.id for h in await again.search(keyword("kingfisher owl", top_k=5))] in (["a_0", "b_0"], ["b_0", "a_0"])
    await again.close()


async def test_a_keyword_index_killed_in_the_middle_of_a_commit_opens_and_catches_up(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s")
    await store.open(INFO)
    await store.replace_documents([document("a", ["heron by the lake"])])
    await settle(store)
    keywords = tmp_path / "s" / "keywords"
    committed = {name: (keywords / name).read_bytes() for name in ("meta.json", ".managed.json")}
    await store.replace_documents([document("a", ["kingfisher by the river"]), document("b", ["owl in the barn"])])
    await settle(store)
    # Killed after writing the next commit's files but before meta.json named them: the files are there, the
    # index still says the older commit; replaying the same changes wants the same file names again.
    await die(store)
    for name, content in committed.items():
        (keywords / name).write_bytes(content)
    again = EmbeddedStore(tmp_path / "s")
    await again.open(INFO)
    assert await again.search(keyword("heron")) == []
    assert [h.id for h in await again.search(keyword("kingfisher owl", top_k=5))] in (["a_0", "b_0"], ["b_0", "a_0"])
    await again.close()


async def test_a_keyword_index_that_cannot_catch_up_is_rebuilt_from_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EmbeddedStore(tmp_path / "s")
    await store.open(INFO)
    await store.replace_documents([document("a", ["heron by the lake"])])
    await die(store)
    failures = iter([ValueError("Failed to open file for write: FileAlreadyExists")])
    original = KeywordIndex.catch_up

    def failing_once(self: KeywordIndex, conn: sqlite3.Connection) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        original(self, conn)

    monkeypatch.setattr(KeywordIndex, "catch_up", failing_once)
    again = EmbeddedStore(tmp_path / "s")
    await again.open(INFO)
    assert [h.id for h in await again.search(keyword("heron"))] == ["a_0"]
    await again.close()


async def test_a_keyword_index_of_another_database_is_rebuilt(tmp_path: Path) -> None:
    first = EmbeddedStore(tmp_path / "s")
    await first.open(INFO)
    await first.replace_documents([document("a", ["heron by the lake"])])
    await first.close()
    kept = tmp_path / "kept"
    shutil.copytree(tmp_path / "s" / "keywords", kept)
    shutil.rmtree(tmp_path / "s")
    second = EmbeddedStore(tmp_path / "s")
    await second.open(INFO)
    await second.replace_documents([document("b", ["owl in the barn"])])
    await second.close()
    shutil.rmtree(tmp_path / "s" / "keywords")
    shutil.copytree(kept, tmp_path / "s" / "keywords")  # the first database's index beside the second database
    again = EmbeddedStore(tmp_path / "s")
    await again.open(INFO)
    assert await again.search(keyword("heron")) == []
    assert [h.id for h in await again.search(keyword("owl"))] == ["b_0"]
    await again.close()


async def test_two_workers_on_one_directory_see_each_others_writes(tmp_path: Path) -> None:
    one, two = EmbeddedStore(tmp_path / "s"), EmbeddedStore(tmp_path / "s")
    await one.open(INFO)
    await two.open(INFO)
    await one.replace_documents([document("a", ["heron by the lake"])])
    assert [h.id for h in await two.search(keyword("heron"))] == ["a_0"]
    await two.replace_documents([document("a", ["owl in the barn"])])
    await two.delete(ids=["zzz"])
    assert await one.search(keyword("heron")) == []
    assert [h.id for h in await one.search(keyword("owl"))] == ["a_0"]
    await one.close()
    await two.close()
    with sqlite3.connect(tmp_path / "s" / "retrieval.db") as conn:  # the log is trimmed only as far as both went
        assert conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0] == 0


async def test_a_keyword_index_behind_a_trimmed_change_log_is_rebuilt(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s")
    await store.open(INFO)
    await store.replace_documents([document("a", ["heron by the lake"])])
    await settle(store)
    old = tmp_path / "old-keywords"
    shutil.copytree(tmp_path / "s" / "keywords", old)
    await store.replace_documents([document("b", ["owl in the barn"])])
    await store.close()  # trims the change log up to the last write
    shutil.rmtree(tmp_path / "s" / "keywords")
    shutil.copytree(old, tmp_path / "s" / "keywords")
    again = EmbeddedStore(tmp_path / "s")
    await again.open(INFO)
    assert [h.id for h in await again.search(keyword("owl heron", top_k=5))] in (["a_0", "b_0"], ["b_0", "a_0"])
    await again.close()


async def test_hybrid_first_results_do_not_depend_on_top_k(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s", candidate_pool=20)
    await store.open(INFO)
    words = ["alpha", "beta", "gamma", "delta"]
    await store.replace_documents(
        [document(f"d{i}", [f"{words[i % 4]} {words[(i * 7) % 4]} text {i}"], seed=i) for i in range(200)]
    )
    request = SearchRequest(text="alpha gamma", embedding=unit(42), top_k=5)
    few = await store.search(request)
    many = await store.search(SearchRequest(text="alpha gamma", embedding=unit(42), top_k=150))
    assert len(few) == 5 and len(many) == 150
    assert [h.id for h in many[:5]] == [h.id for h in few]
    assert len({h.id for h in many}) == 150
    await store.close()


async def test_convex_fusion_ranks_an_item_strong_on_both_sides_first(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s", fusion="convex")
    await store.open(INFO)
    await store.replace_documents(
        [document("both", ["zebra stripes"], seed=1), document("kw", ["zebra zebra"], seed=2), document("x", ["y"], 3)]
    )
    hits = await store.search(SearchRequest(text="zebra stripes", embedding=unit(1000), top_k=3))
    assert hits[0].id == "both_0"
    assert hits[0].score == pytest.approx(2.0)
    await store.close()


async def test_the_default_scaled_fusion_adds_cosine_and_bm25_over_the_best_with_weights_0_7_and_0_3(
    tmp_path: Path,
) -> None:
    store = EmbeddedStore(tmp_path / "s")
    await store.open(INFO)
    await store.replace_documents(
        [document("both", ["zebra stripes"], seed=1), document("kw", ["zebra zebra"], seed=2), document("x", ["y"], 3)]
    )
    hits = await store.search(SearchRequest(text="zebra stripes", embedding=unit(1000), top_k=3))
    dense = {
        h.id: h.score for h in await store.search(SearchRequest(text="", embedding=unit(1000), top_k=3, mode="dense"))
    }
    words = {
        h.id: h.score
        for h in await store.search(SearchRequest(text="zebra stripes", embedding=None, top_k=3, mode="keyword"))
    }
    assert hits[0].id == "both_0"
    best = max(words.values())
    for hit in hits:
        expected = 0.7 * dense.get(hit.id or "", 0.0) + 0.3 * words.get(hit.id or "", 0.0) / best
        assert hit.score == pytest.approx(expected)
    weighted = await store.search(
        SearchRequest(text="zebra stripes", embedding=unit(1000), top_k=1, dense_weight=1.0, keyword_weight=1.0)
    )
    assert weighted[0].score == pytest.approx(dense["both_0"] + words["both_0"] / best)
    await store.close()


async def test_rrf_brings_up_the_one_keyword_match_even_over_chunks_identical_to_the_query(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s", fusion="rrf")
    await store.open(INFO)
    await store.replace_documents(  # seed 1: the fillers' vectors are unit(1000), the query's
        [document(f"filler{i}", ["filler text"], seed=1) for i in range(10)]
        + [document("needle", ["the quokka is a marsupial"], seed=4)]
    )
    hits = await store.search(SearchRequest(text="quokka", embedding=unit(1000), top_k=3))
    assert "needle_0" in [h.id for h in hits]
    await store.close()


def test_an_unknown_fusion_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fusion"):
        EmbeddedStore(tmp_path, fusion="max")


def test_a_mask_with_no_allowed_rows_finds_nothing(tmp_path: Path) -> None:
    index = KeywordIndex(tmp_path / "k")
    with sqlite3.connect(tmp_path / "db", isolation_level=None) as conn:
        conn.executescript(
            "CREATE TABLE chunks (rowid INTEGER PRIMARY KEY, text TEXT);"
            "CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, chunk_rowid INTEGER, op INTEGER);"
            "INSERT INTO chunks VALUES (1, 'zebra');"
        )
        index.open(conn, "x")
        assert index.search("zebra", 5) == [(1, pytest.approx(index.search("zebra", 5)[0][1]))]
        assert index.search("zebra", 5, np.zeros(2, dtype=bool)) == []
        assert index.search("zebra", 5, np.array([False, True])) == index.search("zebra", 5)


async def test_a_keyword_index_ahead_of_a_restored_older_database_is_rebuilt(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s")
    await store.open(INFO)
    await store.replace_documents([document("a", ["heron by the lake"])])
    await store.close()
    database = tmp_path / "s" / "retrieval.db"
    shutil.copy(database, tmp_path / "older.db")
    store = EmbeddedStore(tmp_path / "s")
    await store.open(INFO)
    await store.replace_documents([document("b", ["owl in the barn"])])
    await store.close()
    shutil.copy(tmp_path / "older.db", database)  # the database restored from the older copy, the index kept
    (tmp_path / "s" / "vectors.npz").unlink()
    again = EmbeddedStore(tmp_path / "s")
    await again.open(INFO)
    await again.replace_documents([document("c", ["crane at dawn"])])  # may take the rowid b had
    assert await again.search(keyword("owl")) == []
    assert [h.id for h in await again.search(keyword("crane"))] == ["c_0"]
    assert [h.id for h in await again.search(keyword("heron"))] == ["a_0"]
    await again.close()


async def test_a_large_catch_up_indexes_every_added_chunk_and_drops_every_replaced_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyword_index, "LARGE_CATCH_UP", 50)  # the several-thread writer, on a small store
    # In this process (the background process has its own LARGE_CATCH_UP): the searches catch up.
    monkeypatch.setattr(EmbeddedStore, "_keywords_behind", lambda self: None)
    store = EmbeddedStore(tmp_path / "s")
    await store.open(INFO)
    await store.replace_documents([document(f"d{i}", [f"alpha{i} common"], seed=i) for i in range(120)])
    await settle(store)
    assert [h.id for h in await store.search(keyword("alpha77"))] == ["d77_0"]
    assert len(await store.search(keyword("common", top_k=200))) == 120
    # Replaced in one large write: the old texts leave the index, the new ones enter it.
    await store.replace_documents([document(f"d{i}", [f"beta{i} common"], seed=i) for i in range(60)])
    await settle(store)
    assert await store.search(keyword("alpha7")) == []
    assert [h.id for h in await store.search(keyword("beta7"))] == ["d7_0"]
    assert [h.id for h in await store.search(keyword("alpha77"))] == ["d77_0"]
    assert len(await store.search(keyword("common", top_k=200))) == 120
    await store.close()


async def test_written_documents_become_searchable_by_keyword_in_the_background_without_a_search(
    tmp_path: Path,
) -> None:
    store = EmbeddedStore(tmp_path / "s")
    await store.open(INFO)
    await store.replace_documents([document(f"d{i}", [f"delta{i} shared"], seed=i) for i in range(40)])
    head = store._head(store.conn)
    deadline = time.monotonic() + 30
    while store._keywords.applied < head and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert store._keywords.applied == head
    assert [rowid for rowid, _ in store._keywords.search("delta39", 10)] == [40]
    await store.close()
