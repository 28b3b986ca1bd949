from __future__ import annotations

from pathlib import Path

import pytest

from plugkit.plugins.retrieval.settings import RetrievalSettings
from plugkit.plugins.retrieval.stores import UnknownStoreError, build_store
from plugkit.plugins.retrieval.stores.embedded import EmbeddedStore


def test_the_embedded_store_is_built_in_the_data_dir(tmp_path: Path) -> None:
    store = build_store("embedded", RetrievalSettings(data_dir=tmp_path, hybrid_keyword_weight=0.5))
    assert isinstance(store, EmbeddedStore)
    assert store.directory == tmp_path / "retrieval"
    assert store.keyword_weight == 0.5


def test_an_unknown_store_name_is_refused_with_the_choices() -> None:
    with pytest.raises(UnknownStoreError, match="embedded, pgvector, milvus, qdrant"):
        build_store("cassandra", RetrievalSettings())


def test_a_store_name_that_is_not_a_module_name_is_refused() -> None:
    with pytest.raises(UnknownStoreError, match="not a store name"):
        build_store("../embedded", RetrievalSettings())


@pytest.mark.parametrize("name", ["chroma", "lancedb"])
def test_chroma_and_lancedb_are_built_from_the_plugin_settings_with_the_key_as_a_secret(
    tmp_path: Path, name: str
) -> None:
    store = build_store(name, RetrievalSettings(data_dir=tmp_path, store_url="http://h:1", store_api_key="sk-1"))
    assert store.name == name
    assert store.settings.api_key == "sk-1"  # type: ignore[attr-defined]
    assert store.settings.data_dir == tmp_path  # type: ignore[attr-defined]


@pytest.mark.parametrize("device", ["cpu", "cuda"])
async def test_the_embedded_store_trains_its_ivf_lists_on_the_embedding_device(
    tmp_path: Path, device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from plugkit.plugins.retrieval.models import DocumentChunk, DocumentChunkMetadata
    from plugkit.plugins.retrieval.stores import ann
    from plugkit.plugins.retrieval.stores.base import ChunkRecord, DocumentRecord, StoreInfo

    devices: list[str] = []
    kmeans = ann.spherical_kmeans

    def recorded(vectors: np.ndarray, k: int, **kwargs: object) -> np.ndarray:
        devices.append(str(kwargs["device"]))
        kwargs["device"] = "cpu"  # this machine may have no GPU: the call is what is checked
        return kmeans(vectors, k, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ann, "spherical_kmeans", recorded)
    store = build_store("embedded", RetrievalSettings(data_dir=tmp_path, embed_device=device, ann_min_chunks=100))
    await store.open(StoreInfo(embedding_model="test", dimension=8))
    vectors = np.random.default_rng(0).normal(size=(120, 8)).astype(np.float32)
    await store.replace_documents(
        [
            DocumentRecord(
                f"d{n}", [ChunkRecord.of(DocumentChunk(id=f"d{n}_0", text="x", metadata=DocumentChunkMetadata()), v)]
            )
            for n, v in enumerate(vectors)
        ]
    )
    await store.close()  # waits for the training
    assert devices == [device]
