from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from plugkit.plugins.retrieval.models import DocumentMetadataFilter
from plugkit.plugins.retrieval.stores.base import SearchRequest, StoreInfo
from plugkit.plugins.retrieval.stores.common import StoreSettings
from plugkit.plugins.retrieval.stores.pgvector import PgVectorStore, create_store, psycopg_url
from tests.contract.contract_data import axis, document

INFO = StoreInfo("test-model", 8)


@pytest.fixture
def settings(postgres_url: str) -> StoreSettings:
    return StoreSettings(store_url=postgres_url, collection=f"pg_{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def store(settings: StoreSettings) -> PgVectorStore:
    store = create_store(settings)
    await store.open(INFO)
    yield store
    await store.close()


def test_sqlalchemy_style_urls_are_turned_into_libpq_urls() -> None:
    assert psycopg_url("postgresql+psycopg://u:p@/db?host=/tmp/x") == "postgresql://u:p@/db?host=/tmp/x"
    assert psycopg_url("postgres://u@h/db") == "postgres://u@h/db"


def test_the_store_needs_a_url() -> None:
    with pytest.raises(ValueError, match="store_url"):
        create_store(StoreSettings())


async def test_the_table_gets_an_hnsw_index_and_a_full_text_index(
    store: PgVectorStore, settings: StoreSettings
) -> None:
    with psycopg.connect(psycopg_url(settings.store_url or "")) as conn:
        rows = conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", (settings.collection,)).fetchall()
    definitions = " ".join(row[0] for row in rows)

    assert "USING hnsw (embedding vector_cosine_ops)" in definitions
    assert "USING gin (tsv)" in definitions


async def test_sql_in_filter_values_and_query_text_is_only_data(store: PgVectorStore, settings: StoreSettings) -> None:
    evil = f"x'; DROP TABLE {settings.collection}; --"
    await store.replace_documents([document("d", "robert tables", author=evil)])

    for mode in ("dense", "keyword", "hybrid"):
        results = await store.search(
            SearchRequest(text=evil, embedding=axis(0), mode=mode, filter=DocumentMetadataFilter(author=evil))  # type: ignore[arg-type]
        )
        # The query's words (x, drop, table) reach full-text search as data: "tables" matches "table".
        assert [r.metadata.author for r in results] == [evil], mode
    assert await store.delete(filter=DocumentMetadataFilter(author=evil)) == 1
    assert await store.count() == 0


async def test_delete_all_leaves_other_tables_of_the_database_alone(
    store: PgVectorStore, settings: StoreSettings
) -> None:
    other = f"other_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(psycopg_url(settings.store_url or ""), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {other} (v int)")
        conn.execute(f"INSERT INTO {other} VALUES (1), (2)")
    await store.replace_documents([document("d", "text")])

    await store.delete(delete_all=True)

    with psycopg.connect(psycopg_url(settings.store_url or "")) as conn:
        assert conn.execute(f"SELECT count(*) FROM {other}").fetchone() == (2,)


async def test_a_selective_filter_still_fills_top_k_beyond_the_hnsw_candidate_list(postgres_url: str) -> None:
    store = create_store(StoreSettings(store_url=postgres_url, collection=f"pg_{uuid.uuid4().hex[:12]}", ef_search=10))
    await store.open(INFO)
    try:
        near = [document(f"n{i}", "near", vectors=[axis(0, lean=0.001 * i)], author="crowd") for i in range(200)]
        far = [document(f"f{i}", "far", vectors=[axis(5, lean=0.01 * i)], author="rare") for i in range(15)]
        await store.replace_documents(near + far)

        rare = DocumentMetadataFilter(author="rare")
        results = await store.search(SearchRequest(text="far", embedding=axis(0), mode="dense", top_k=15, filter=rare))

        assert sorted(r.metadata.document_id or "" for r in results) == sorted(f"f{i}" for i in range(15))
    finally:
        await store.close()


async def test_workers_opening_the_same_table_at_once_all_succeed(settings: StoreSettings) -> None:
    stores = [create_store(settings) for _ in range(4)]

    await asyncio.gather(*(store.open(INFO) for store in stores))

    await stores[0].replace_documents([document("d", "shared table")])
    assert [await store.count() for store in stores] == [1, 1, 1, 1]
    for store in stores:
        await store.close()
