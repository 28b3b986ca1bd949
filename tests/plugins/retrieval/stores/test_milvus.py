from __future__ import annotations

from pathlib import Path

import pytest
from pymilvus import MilvusClient

from plugkit.plugins.retrieval.models import DocumentMetadataFilter
from plugkit.plugins.retrieval.stores.base import SearchRequest, StoreInfo, StoreMismatchError
from plugkit.plugins.retrieval.stores.common import StoreSettings
from plugkit.plugins.retrieval.stores.milvus import create_store, literal
from tests.contract.contract_data import axis, document

INFO = StoreInfo("test-model", 8)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ('" or tenant != "', '"\\" or tenant != \\""'),
        (1.5, "1.5"),
    ],
)
def test_literals_quote_and_escape_values(value: str | float, expected: str) -> None:
    assert literal(value) == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_number_is_not_a_literal(value: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        literal(value)


async def test_without_a_url_milvus_lite_runs_in_a_file_of_the_data_directory(tmp_path: Path) -> None:
    store = create_store(StoreSettings(data_dir=tmp_path / "data"))
    await store.open(INFO)
    try:
        await store.replace_documents([document("d", "lite")])
        assert await store.count() == 1
    finally:
        await store.close()

    assert (tmp_path / "data" / "milvus.db").exists()


async def test_the_collection_gets_hnsw_and_bm25_indexes(tmp_path: Path) -> None:
    uri = str(tmp_path / "m.db")
    store = create_store(StoreSettings(store_url=uri, collection="indexed"))
    await store.open(INFO)
    await store.close()

    client = MilvusClient(uri)
    try:
        described = {name: client.describe_index("indexed", name) for name in client.list_indexes("indexed")}
    finally:
        client.close()
    kinds = {info["field_name"]: (info["index_type"], info.get("metric_type")) for info in described.values()}
    assert kinds["embedding"] == ("HNSW", "COSINE")
    assert kinds["sparse"] == ("SPARSE_INVERTED_INDEX", "BM25")


async def test_a_filter_value_shaped_like_an_expression_is_only_data(tmp_path: Path) -> None:
    store = create_store(StoreSettings(store_url=str(tmp_path / "m.db")))
    await store.open(INFO)
    try:
        await store.replace_documents([document("a", "alpha", author="ann"), document("b", "beta", author="bob")])
        sneaky = 'ann" or author != "'

        results = await store.search(
            SearchRequest(text="alpha", embedding=axis(0), mode="dense", filter=DocumentMetadataFilter(author=sneaky))
        )
        deleted = await store.delete(filter=DocumentMetadataFilter(author=sneaky))

        assert (results, deleted, await store.count()) == ([], 0, 2)
    finally:
        await store.close()


async def test_a_collection_not_made_by_plugkit_is_refused(tmp_path: Path) -> None:
    uri = str(tmp_path / "m.db")
    client = MilvusClient(uri)
    client.create_collection("foreign", dimension=8)
    client.close()
    store = create_store(StoreSettings(store_url=uri, collection="foreign"))

    with pytest.raises(StoreMismatchError, match="not made by plugkit"):
        await store.open(INFO)
    await store.close()


async def test_milvus_lite_flushes_a_large_write_before_searching_it(tmp_path: Path) -> None:
    store = create_store(StoreSettings(store_url=str(tmp_path / "m.db"), lite_flush_rows=10))
    await store.open(INFO)
    try:
        await store.replace_documents([document(f"d{i}", f"row {i}", vectors=[axis(i % 8)]) for i in range(25)])
        assert store.unflushed == 25

        results = await store.search(SearchRequest(text="row", embedding=axis(3), mode="dense", top_k=25))

        assert store.unflushed == 0
        assert len(results) == 25
        assert {r.metadata.document_id for r in results[:3]} <= {f"d{i}" for i in range(3, 25, 8)}
    finally:
        await store.close()


async def test_a_collection_of_an_older_layout_that_lite_cannot_extend_is_refused_naming_the_way_out(
    tmp_path: Path,
) -> None:
    from pymilvus import DataType

    from plugkit.plugins.retrieval.stores.milvus import DIMENSION_KEY, MODEL_KEY

    uri = str(tmp_path / "old.db")
    client = MilvusClient(uri)
    schema = client.create_schema(auto_id=False)
    schema.add_field("pk", DataType.VARCHAR, max_length=64, is_primary=True)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=8)
    index = client.prepare_index_params()
    index.add_index("embedding", index_type="FLAT", metric_type="COSINE")
    client.create_collection(
        "old", schema=schema, index_params=index, properties={MODEL_KEY: INFO.embedding_model, DIMENSION_KEY: "8"}
    )
    client.close()

    store = create_store(StoreSettings(store_url=uri, collection="old"))
    with pytest.raises(StoreMismatchError, match="(?s)older plugkit.*new collection"):
        await store.open(INFO)
    await store.close()
