"""The filter language and custom metadata, run unchanged against each provider: every store answers the same ids."""

from __future__ import annotations

from typing import Any

import pytest

from plugkit.plugins.retrieval.filters import to_tree
from plugkit.plugins.retrieval.models import DocumentMetadataFilter, SearchMode, Source, parse_filter
from plugkit.plugins.retrieval.stores.base import SearchRequest, VectorStore
from tests.contract.contract_data import axis, document, embed

DOCUMENTS: dict[str, dict[str, Any]] = {
    "d1": {
        "author": "ann",
        "source": Source.email,
        "created_at": "2024-01-01",
        "team": "infra",
        "priority": 1,
        "ratio": 0.5,
        "urgent": True,
        "tags": ["alpha", "beta"],
        "due": "2024-03-01",
    },
    "d2": {
        "author": "bob",
        "source": Source.chat,
        "created_at": "2024-02-01T10:00:00+02:00",
        "team": "web",
        "priority": 2,
        "urgent": False,
        "tags": ["beta"],
        "due": "2024-04-01T00:00:00Z",
    },
    "d3": {"author": "ann", "source": Source.file, "team": "web", "priority": 3, "ratio": 2.5, "tags": []},
    "d4": {"author": "carol", "created_at": "2024-03-05", "team.name": "ops-1", "priority": 10, "team": "x\"y'z"},
    "d5": {},
}

MATRIX: list[tuple[dict[str, Any], list[str]]] = [
    ({"key": "team", "type": "eq", "value": "infra"}, ["d1"]),
    ({"key": "team", "type": "ne", "value": "infra"}, ["d2", "d3", "d4", "d5"]),
    ({"key": "team", "type": "in", "value": ["web", "x\"y'z"]}, ["d2", "d3", "d4"]),
    ({"key": "team", "type": "nin", "value": ["web"]}, ["d1", "d4", "d5"]),
    ({"key": "team.name", "type": "eq", "value": "ops-1"}, ["d4"]),
    ({"key": "priority", "type": "gt", "value": 1}, ["d2", "d3", "d4"]),
    ({"key": "priority", "type": "lte", "value": 2}, ["d1", "d2"]),
    ({"key": "priority", "type": "eq", "value": 3}, ["d3"]),
    ({"key": "priority", "type": "in", "value": [1, 10]}, ["d1", "d4"]),
    ({"key": "ratio", "type": "gte", "value": 0.5}, ["d1", "d3"]),
    ({"key": "ratio", "type": "lt", "value": 1}, ["d1"]),
    ({"key": "urgent", "type": "eq", "value": True}, ["d1"]),
    ({"key": "urgent", "type": "ne", "value": True}, ["d2", "d3", "d4", "d5"]),
    ({"key": "tags", "type": "eq", "value": "beta"}, ["d1", "d2"]),
    ({"key": "tags", "type": "in", "value": ["alpha", "gamma"]}, ["d1"]),
    ({"key": "tags", "type": "ne", "value": "beta"}, ["d3", "d4", "d5"]),
    ({"key": "due", "type": "gt", "value": "2024-03-01T00:00:00Z"}, ["d2"]),
    ({"key": "due", "type": "eq", "value": "2024-03-01T00:00:00+00:00"}, ["d1"]),
    ({"key": "created_at", "type": "gte", "value": "2024-02-01"}, ["d2", "d4"]),
    ({"key": "created_at", "type": "lt", "value": "2024-02-01T08:30:00Z"}, ["d1", "d2"]),
    ({"key": "created_at", "type": "eq", "value": "2024-01-01T00:00:00Z"}, ["d1"]),
    ({"key": "source", "type": "in", "value": ["email", "file"]}, ["d1", "d3"]),
    ({"key": "source", "type": "ne", "value": "email"}, ["d2", "d3", "d4", "d5"]),
    ({"key": "author", "type": "eq", "value": "ann"}, ["d1", "d3"]),
    ({"key": "document_id", "type": "nin", "value": ["d1", "d2"]}, ["d3", "d4", "d5"]),
    ({"key": "missing", "type": "eq", "value": "x"}, []),
    ({"key": "missing", "type": "ne", "value": "x"}, ["d1", "d2", "d3", "d4", "d5"]),
    (
        {
            "type": "and",
            "filters": [
                {"key": "author", "type": "eq", "value": "ann"},
                {
                    "type": "or",
                    "filters": [
                        {"key": "urgent", "type": "eq", "value": True},
                        {"key": "ratio", "type": "gt", "value": 2},
                    ],
                },
            ],
        },
        ["d1", "d3"],
    ),
    (
        {
            "type": "or",
            "filters": [
                {"key": "priority", "type": "gte", "value": 10},
                {
                    "type": "and",
                    "filters": [
                        {"key": "team", "type": "eq", "value": "web"},
                        {"key": "tags", "type": "eq", "value": "beta"},
                    ],
                },
            ],
        },
        ["d2", "d4"],
    ),
    ({"author": "ann", "source": "file"}, ["d3"]),
    ({"start_date": "2024-02-01", "end_date": "2024-03-05T00:00:00Z"}, ["d2", "d4"]),
]


async def _fill(store: VectorStore) -> None:
    await store.replace_documents(
        [document(name, f"shared words {name}", **metadata) for name, metadata in DOCUMENTS.items()]
    )


@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
async def test_every_filter_of_the_matrix_selects_the_same_documents(store: VectorStore, mode: SearchMode) -> None:
    await _fill(store)
    wrong = {}
    for data, expected in MATRIX:
        tree = to_tree(parse_filter(data))
        request = SearchRequest(text="shared words", embedding=embed("shared words"), top_k=10, mode=mode, filter=tree)
        found = sorted(r.metadata.document_id or "" for r in await store.search(request))
        if found != expected:
            wrong[str(data)] = found
    assert wrong == {}


async def test_custom_metadata_comes_back_with_every_chunk_and_survives_a_reupsert(store: VectorStore) -> None:
    meta = DOCUMENTS["d1"]
    await store.replace_documents([document("d1", "one", "two", **meta)])
    await store.replace_documents([document("d1", "one again", "two again", "three", **meta)])

    chunks = await store.get_document("d1")

    assert len(chunks) == 3
    for chunk in chunks:
        assert chunk.metadata.model_dump(exclude_none=True) == {**meta, "document_id": "d1"}
    found = await store.search(SearchRequest(text="three", embedding=embed("three"), top_k=1))
    assert found[0].metadata.custom == {k: v for k, v in meta.items() if k not in ("author", "source", "created_at")}


async def test_delete_by_a_compound_filter_removes_exactly_its_documents(store: VectorStore) -> None:
    await _fill(store)
    tree = to_tree(
        parse_filter(
            {
                "type": "or",
                "filters": [
                    {"key": "tags", "type": "eq", "value": "beta"},
                    {"key": "priority", "type": "gt", "value": 5},
                ],
            }
        )
    )

    deleted = await store.delete(filter=tree)

    assert deleted == 3
    left = await store.search(SearchRequest(text="shared words", embedding=embed("shared words"), top_k=10))
    assert sorted(r.metadata.document_id or "" for r in left) == ["d3", "d5"]


async def test_the_listing_pages_documents_newest_first_with_counts_and_metadata(store: VectorStore) -> None:
    for n in range(5):
        await store.replace_documents([document(f"doc{n}", *(["text"] * (n + 1)), team="a" if n % 2 else "b")])
    await store.replace_documents([document("doc1", "rewritten", team="a")])  # now the newest

    first = await store.list_documents(limit=2)
    assert [e.document_id for e in first.documents] == ["doc1", "doc4"] and first.more
    assert [e.chunk_count for e in first.documents] == [1, 5]
    assert first.documents[0].metadata.custom == {"team": "a"}
    assert first.documents[0].stored_ts < first.documents[0].updated_ts
    last = first.documents[-1]
    second = await store.list_documents(limit=10, after=(last.updated_ts, last.document_id))
    assert [e.document_id for e in second.documents] == ["doc3", "doc2", "doc0"] and not second.more

    filtered = await store.list_documents(filter=to_tree(parse_filter({"key": "team", "type": "eq", "value": "a"})))
    assert [e.document_id for e in filtered.documents] == ["doc1", "doc3"]


async def test_the_listing_shows_a_tenant_only_its_own_documents(store: VectorStore) -> None:
    await store.replace_documents([document("mine", "x")], tenant="alice")
    await store.replace_documents([document("shared", "x")])

    assert [e.document_id for e in (await store.list_documents(tenant="alice")).documents] == ["mine"]
    assert [e.document_id for e in (await store.list_documents()).documents] == ["shared"]
    assert (await store.list_documents(tenant="bob")).documents == []


async def test_a_flat_filter_object_is_still_accepted_by_every_store(store: VectorStore) -> None:
    await _fill(store)
    request = SearchRequest(
        text="shared", embedding=embed("shared"), top_k=10, filter=DocumentMetadataFilter(author="ann")
    )
    assert sorted(r.metadata.document_id or "" for r in await store.search(request)) == ["d1", "d3"]


@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
async def test_a_filter_on_a_custom_key_still_fills_top_k_when_other_chunks_are_closer(
    store: VectorStore, mode: SearchMode
) -> None:
    near = [document(f"near{i}", f"near {i}", vectors=[axis(0, lean=0.01 * i)], team="b") for i in range(30)]
    far = document("a", "far 0", "far 1", "far 2", vectors=[axis(4, lean=0.1 * i) for i in range(3)], team="a")
    await store.replace_documents([*near, far])
    tree = to_tree(parse_filter({"key": "team", "type": "eq", "value": "a"}))

    results = await store.search(SearchRequest(text="far near", embedding=axis(0), top_k=3, mode=mode, filter=tree))

    assert sorted(r.text for r in results) == ["far 0", "far 1", "far 2"]
