from __future__ import annotations

from pathlib import Path

import pytest
from qdrant_client import AsyncQdrantClient, models

from plugkit.plugins.retrieval.stores.base import StoreInfo, StoreMismatchError
from plugkit.plugins.retrieval.stores.common import StoreSettings
from plugkit.plugins.retrieval.stores.qdrant import PAYLOAD_INDEXES, connect, create_store, is_server, point_id
from tests.contract.contract_data import document

INFO = StoreInfo("test-model", 8)


@pytest.mark.parametrize(
    ("url", "server"),
    [
        (None, False),
        (":memory:", False),
        ("/srv/qdrant", False),
        ("http://qdrant:6333", True),
        ("https://x.cloud", True),
    ],
)
def test_urls_choose_local_mode_or_a_server(url: str | None, server: bool) -> None:
    assert is_server(url) is server


async def test_without_a_url_local_mode_keeps_its_files_in_the_data_directory(tmp_path: Path) -> None:
    store = create_store(StoreSettings(data_dir=tmp_path / "data"))
    await store.open(INFO)
    await store.replace_documents([document("d", "local")])
    await store.close()

    assert (tmp_path / "data" / "qdrant").is_dir()
    reopened = create_store(StoreSettings(data_dir=tmp_path / "data"))
    await reopened.open(INFO)
    assert await reopened.count() == 1
    await reopened.close()


async def test_memory_mode_stores_and_counts() -> None:
    store = create_store(StoreSettings(store_url=":memory:"))
    await store.open(INFO)
    await store.replace_documents([document("d", "in memory", "two")])
    assert await store.count() == 2
    await store.close()


def test_payload_indexes_cover_the_filtered_fields_and_the_text() -> None:
    assert {"tenant", "document_id", "source", "source_id", "author", "url", "created_ts"} <= set(PAYLOAD_INDEXES)
    assert PAYLOAD_INDEXES["created_ts"] == models.PayloadSchemaType.FLOAT
    assert PAYLOAD_INDEXES["tenant"].is_tenant is True
    assert PAYLOAD_INDEXES["text"].scoring is True


def test_point_ids_are_stable_and_differ_between_tenants() -> None:
    assert point_id("", "d_0") == point_id("", "d_0")
    assert point_id("acme", "d_0") != point_id("", "d_0")


async def test_a_collection_not_made_by_plugkit_is_refused(tmp_path: Path) -> None:
    client = AsyncQdrantClient(path=str(tmp_path / "q"))
    await client.create_collection("foreign", vectors_config=models.VectorParams(size=8, distance=models.Distance.DOT))
    await client.close()
    store = create_store(StoreSettings(store_url=str(tmp_path / "q"), collection="foreign"))

    with pytest.raises(StoreMismatchError, match="not made by plugkit"):
        await store.open(INFO)
    await store.close()


async def test_a_server_url_makes_a_remote_client_without_connecting() -> None:
    client = connect(StoreSettings(store_url="https://127.0.0.1:9", api_key="k"))
    assert client.init_options["url"] == "https://127.0.0.1:9"
    await client.close()
