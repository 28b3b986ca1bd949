"""The one contract every VectorStore keeps, run unchanged against each provider (see conftest.py)."""

from __future__ import annotations

import pytest

from plugkit.plugins.retrieval.models import DocumentMetadataFilter, SearchMode, Source
from plugkit.plugins.retrieval.stores.base import SearchRequest, StoreInfo, StoreMismatchError, VectorStore
from tests.contract.contract_data import DIM, INFO, OpenStore, axis, document, embed

MODES: tuple[SearchMode, ...] = ("dense", "keyword", "hybrid")


def ask(text: str, top_k: int = 3, mode: SearchMode = "dense", **kwargs: object) -> SearchRequest:
    embedding = kwargs.pop("embedding", None) or embed(text)
    return SearchRequest(text=text, embedding=embedding, top_k=top_k, mode=mode, **kwargs)  # type: ignore[arg-type]


async def test_an_empty_store_counts_zero_and_finds_nothing_in_every_mode(store: VectorStore) -> None:
    assert await store.count() == 0
    for mode in MODES:
        assert await store.search(ask("anything at all", mode=mode)) == []
    assert await store.get_document("missing") == []


async def test_upserted_chunks_come_back_with_ids_text_and_metadata(store: VectorStore) -> None:
    meta = {
        "source": Source.email,
        "source_id": "mail-7",
        "url": "https://example.com/m/7",
        "author": "Ada",
        "created_at": "2024-03-01T10:00:00Z",
    }
    await store.replace_documents([document("doc1", "first chunk about owls", "second chunk about bats", **meta)])

    chunks = await store.get_document("doc1")

    assert [c.id for c in chunks] == ["doc1_0", "doc1_1"]
    assert [c.text for c in chunks] == ["first chunk about owls", "second chunk about bats"]
    assert chunks[0].metadata.model_dump(exclude_none=True) == {**meta, "document_id": "doc1"}
    assert await store.count() == 2


async def test_dense_search_ranks_the_closest_chunk_first_with_descending_scores(store: VectorStore) -> None:
    await store.replace_documents([document(f"d{i}", f"text {i}", vectors=[axis(i, lean=0.1 * i)]) for i in range(DIM)])

    results = await store.search(ask("text 3", top_k=4, embedding=axis(3)))

    assert results[0].id == "d3_0"
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert results[0].score == pytest.approx(1 / (1 + 0.09) ** 0.5, abs=1e-3)


async def test_top_k_bounds_the_number_of_results(store: VectorStore) -> None:
    await store.replace_documents([document(f"d{i}", f"note number {i}") for i in range(10)])

    for top_k in (1, 3, 10):
        assert len(await store.search(ask("note number", top_k=top_k))) == top_k
    assert len(await store.search(ask("note number", top_k=50))) == 10


async def test_reupserting_a_document_replaces_all_its_chunks(store: VectorStore) -> None:
    await store.replace_documents([document("doc", "old one", "old two", "old three"), document("other", "kept")])

    await store.replace_documents([document("doc", "new only")])

    assert [c.text for c in await store.get_document("doc")] == ["new only"]
    assert await store.count() == 2
    found = await store.search(ask("old one", top_k=10))
    assert all(not r.text.startswith("old") for r in found)


async def test_the_last_version_wins_when_one_batch_holds_a_document_twice(store: VectorStore) -> None:
    await store.replace_documents([document("doc", "first version"), document("doc", "second version")])

    assert [c.text for c in await store.get_document("doc")] == ["second version"]


@pytest.mark.parametrize(
    ("field", "value", "other"),
    [
        ("document_id", "a", "b"),
        ("source", Source.chat, Source.file),
        ("source_id", "s-1", "s-2"),
        ("author", 'O\'Brien "the" \\ author', "Someone Else"),
        ("url", "https://example.com/a?x=1&y=2", "https://example.com/b"),
    ],
)
async def test_each_filter_field_returns_only_matching_chunks_and_still_fills_top_k(
    store: VectorStore, field: str, value: object, other: object
) -> None:
    # 30 other documents sit closer to the query than the 3 matching chunks (of document "a").
    other_meta = {} if field == "document_id" else {field: other}
    meta = {} if field == "document_id" else {field: value}
    near = [document(f"near{i}", f"near {i}", vectors=[axis(0, lean=0.01 * i)], **other_meta) for i in range(30)]
    far = document("a", "far 0", "far 1", "far 2", vectors=[axis(4, lean=0.1 * i) for i in range(3)], **meta)
    await store.replace_documents([*near, far])

    for mode in MODES:
        results = await store.search(
            ask("far near", top_k=3, mode=mode, embedding=axis(0), filter=DocumentMetadataFilter(**{field: value}))
        )
        assert sorted(r.text for r in results) == ["far 0", "far 1", "far 2"], mode


async def test_filters_combine_with_and(store: VectorStore) -> None:
    await store.replace_documents(
        [
            document("1", "x", author="ann", source=Source.email),
            document("2", "x", author="ann", source=Source.chat),
            document("3", "x", author="bob", source=Source.email),
        ]
    )

    results = await store.search(ask("x", top_k=10, filter=DocumentMetadataFilter(author="ann", source=Source.email)))

    assert [r.metadata.document_id for r in results] == ["1"]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2024-01-02", None, ["jan2", "jan3", "jan3_offset"]),
        (None, "2024-01-02T00:00:00Z", ["jan1", "jan2"]),
        ("2024-01-01T12:00:00+00:00", "2024-01-02T12:00:00Z", ["jan2"]),
        # 2024-01-03T01:00:00+02:00 is 2024-01-02T23:00Z: instants are compared, not strings.
        ("2024-01-02T22:00:00Z", "2024-01-02T23:30:00Z", ["jan3_offset"]),
        ("2025-01-01", None, []),
    ],
)
async def test_date_ranges_compare_created_at_as_instants(
    store: VectorStore, start: str | None, end: str | None, expected: list[str]
) -> None:
    await store.replace_documents(
        [
            document("jan1", "day", created_at="2024-01-01"),
            document("jan2", "day", created_at="2024-01-02T00:00:00Z"),
            document("jan3", "day", created_at="2024-01-03T08:30:00"),
            document("jan3_offset", "day", created_at="2024-01-03T01:00:00+02:00"),
            document("undated", "day"),
        ]
    )

    for mode in MODES:
        results = await store.search(
            ask("day", top_k=10, mode=mode, filter=DocumentMetadataFilter(start_date=start, end_date=end))
        )
        assert sorted(r.metadata.document_id or "" for r in results) == expected, mode


async def test_delete_by_ids_removes_whole_documents_and_counts_their_chunks(store: VectorStore) -> None:
    await store.replace_documents([document("a", "one", "two"), document("b", "three"), document("c", "four")])

    deleted = await store.delete(ids=["a", "c", "never-stored"])

    assert deleted == 3
    assert await store.get_document("a") == []
    assert [r.metadata.document_id for r in await store.search(ask("one two three four", top_k=10))] == ["b"]


async def test_delete_by_filter_removes_only_matching_chunks(store: VectorStore) -> None:
    await store.replace_documents(
        [
            document("a", "one", author="ann", created_at="2024-05-01"),
            document("b", "two", author="ann", created_at="2023-05-01"),
            document("c", "three", author="bob", created_at="2024-05-01"),
        ]
    )

    deleted = await store.delete(filter=DocumentMetadataFilter(author="ann", start_date="2024-01-01"))

    assert deleted == 1
    assert sorted(r.metadata.document_id or "" for r in await store.search(ask("x", top_k=10))) == ["b", "c"]


async def test_delete_all_empties_the_store(store: VectorStore) -> None:
    await store.replace_documents([document(f"d{i}", "text") for i in range(5)])

    assert await store.delete(delete_all=True) == 5
    assert await store.count() == 0
    assert await store.search(ask("text")) == []


async def test_delete_all_leaves_other_collections_on_the_same_engine_alone(open_store: OpenStore) -> None:
    mine = await open_store(collection="mine")
    await mine.replace_documents([document("kept", "must survive")])
    await mine.close()
    theirs = await open_store(collection="theirs")
    await theirs.replace_documents([document("gone", "to delete")])

    await theirs.delete(delete_all=True)
    await theirs.close()

    reopened = await open_store(collection="mine")
    assert [c.text for c in await reopened.get_document("kept")] == ["must survive"]


async def test_tenants_see_count_and_delete_only_their_own_chunks(store: VectorStore) -> None:
    await store.replace_documents([document("doc", "acme secret plan")], tenant="acme")
    await store.replace_documents([document("doc", "globex secret plan"), document("g2", "globex")], tenant="globex")
    await store.replace_documents([document("shared", "shared secret plan")])

    for tenant, expected in (
        ("acme", ["acme secret plan"]),
        ("globex", ["globex secret plan"]),
        (None, ["shared secret plan"]),
    ):
        for mode in MODES:
            results = await store.search(ask("secret plan", top_k=10, mode=mode, tenant=tenant))
            assert [r.text for r in results if "secret" in r.text] == expected, (tenant, mode)
    assert [c.text for c in await store.get_document("doc", tenant="acme")] == ["acme secret plan"]
    assert await store.get_document("doc") == []
    # count() without a tenant counts the whole store, every tenant included.
    assert (await store.count("acme"), await store.count("globex"), await store.count()) == (1, 2, 4)

    assert await store.delete(delete_all=True, tenant="globex") == 2
    assert await store.delete(ids=["doc"], tenant="nobody") == 0
    assert (await store.count("acme"), await store.count("globex"), await store.count()) == (1, 0, 2)
    assert [c.text for c in await store.get_document("shared")] == ["shared secret plan"]


async def test_unicode_text_and_metadata_round_trip_and_match(store: VectorStore) -> None:
    text = "Crème brûlée für Jürgen — 日本語のテキスト 🎉"
    await store.replace_documents([document("ünï", text, author="Zoë Łukasz"), document("plain", "nothing here")])

    for mode in MODES:
        results = await store.search(
            ask("brûlée", top_k=1, mode=mode, filter=DocumentMetadataFilter(author="Zoë Łukasz"))
        )
        assert [(r.text, r.metadata.document_id) for r in results] == [(text, "ünï")], mode
    assert [c.id for c in await store.get_document("ünï")] == ["ünï_0"]


async def test_a_batch_of_1000_documents_is_stored_and_searchable(store: VectorStore) -> None:
    await store.replace_documents(
        [document(f"bulk-{i:04d}", f"bulk document {i}", author=f"a{i % 7}") for i in range(1000)]
    )

    assert await store.count() == 1000
    results = await store.search(
        ask("bulk document 999", top_k=5, filter=DocumentMetadataFilter(document_id="bulk-0999"))
    )
    assert [r.id for r in results] == ["bulk-0999_0"]
    assert len(await store.search(ask("bulk", top_k=100, filter=DocumentMetadataFilter(author="a3")))) == 100
    assert await store.delete(ids=[f"bulk-{i:04d}" for i in range(0, 1000, 2)]) == 500
    assert await store.count() == 500


async def test_keyword_search_returns_the_chunks_holding_the_words(store: VectorStore) -> None:
    await store.replace_documents(
        [
            document("zebra", "zebras migrate across the savanna", vectors=[axis(5)]),
            document("lion", "lions sleep most of the day", vectors=[axis(1)]),
            document("rain", "rain falls in the wet season", vectors=[axis(2)]),
        ]
    )

    results = await store.search(ask("savanna", top_k=3, mode="keyword", embedding=axis(1)))

    assert [r.metadata.document_id for r in results] == ["zebra"]
    assert results[0].score > 0


async def test_hybrid_search_brings_up_a_keyword_match_that_dense_ranks_last(store: VectorStore) -> None:
    # The fillers only loosely like the query (cosine about 0.29, as unrelated texts are under a real model): every
    # fusion, rank-based or score-based, must then let the one keyword match in. (A store fusing by rank lets it in
    # over fillers identical to the query too: tests/plugins/retrieval/stores/test_keyword_index.py.)
    await store.replace_documents(
        [document(f"filler{i}", f"filler text {i}", vectors=[axis(7, lean=0.3 - 0.01 * i)]) for i in range(10)]
        + [document("needle", "the quokka is a marsupial", vectors=[axis(4)])]
    )

    dense = await store.search(ask("quokka", top_k=3, mode="dense", embedding=axis(0)))
    hybrid = await store.search(ask("quokka", top_k=3, mode="hybrid", embedding=axis(0)))

    assert "needle" not in [r.metadata.document_id for r in dense]
    assert "needle" in [r.metadata.document_id for r in hybrid]
    assert [r.score for r in hybrid] == sorted((r.score for r in hybrid), reverse=True)


@pytest.mark.parametrize("mode", MODES)
async def test_scores_are_higher_is_better_in_every_mode(store: VectorStore, mode: SearchMode) -> None:
    await store.replace_documents(
        [
            document("best", "orchid orchid orchid greenhouse", vectors=[axis(3)]),
            document("some", "orchid on a long list of many other words here", vectors=[axis(3, lean=1.0)]),
            document("none", "tractor", vectors=[axis(6)]),
        ]
    )

    results = await store.search(ask("orchid greenhouse", top_k=3, mode=mode, embedding=axis(3)))

    assert results[0].metadata.document_id == "best"
    assert all(a.score >= b.score for a, b in zip(results, results[1:], strict=False))
    assert results[0].score > results[-1].score


async def test_embeddings_come_back_only_when_asked(store: VectorStore) -> None:
    await store.replace_documents([document("d", "vector", vectors=[axis(2)])])

    plain = await store.search(ask("vector", embedding=axis(2)))
    with_vectors = await store.search(ask("vector", embedding=axis(2), include_embeddings=True))

    assert plain[0].embedding is None
    assert with_vectors[0].embedding == pytest.approx(axis(2), abs=1e-6)


async def test_stored_chunks_survive_closing_and_reopening(open_store: OpenStore) -> None:
    store = await open_store()
    await store.replace_documents([document("kept", "persisted text")])
    await store.close()

    reopened = await open_store()

    assert [c.text for c in await reopened.get_document("kept")] == ["persisted text"]
    assert await reopened.count() == 1


@pytest.mark.parametrize("other", [StoreInfo("another-model", DIM), StoreInfo(INFO.embedding_model, DIM * 2)])
async def test_reopening_with_another_embedding_model_or_dimension_is_refused(
    open_store: OpenStore, other: StoreInfo
) -> None:
    store = await open_store()
    await store.replace_documents([document("d", "text")])
    await store.close()

    with pytest.raises(StoreMismatchError):
        await open_store(info=other)


async def test_a_chunk_of_the_wrong_dimension_is_refused(store: VectorStore) -> None:
    with pytest.raises((StoreMismatchError, ValueError)):
        await store.replace_documents([document("d", "short", vectors=[[1.0, 0.0]])])
    assert await store.count() == 0
