"""The contract suite's fixtures: every vector store module present in the tree, each on its real engine.

Providers are listed from the modules that exist (`plugkit.plugins.retrieval.stores.<name>`), none is skipped: a
provider whose module exists but cannot run makes its tests fail, not vanish.
"""

from __future__ import annotations

import importlib
import importlib.util
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from plugkit.plugins.retrieval.stores import STORE_NAMES
from plugkit.plugins.retrieval.stores.base import StoreInfo, VectorStore
from plugkit.plugins.retrieval.stores.common import StoreSettings
from tests.contract.contract_data import INFO, OpenStore

AVAILABLE = [name for name in STORE_NAMES if importlib.util.find_spec(f"plugkit.plugins.retrieval.stores.{name}")]
# Engines that run as a server for the whole session (a fixture gives their URL); every other engine-backed provider
# takes a folder as its store_url (base.py), one per test, which all its stores of that test share.
SESSION_ENGINES = {"pgvector": "postgres_url", "milvus": "milvus_lite_uri"}


@pytest.fixture(params=AVAILABLE)
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def milvus_lite_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One Milvus Lite database file for the session (starting Milvus Lite costs seconds); tests use own collections."""
    return str(tmp_path_factory.mktemp("milvus") / "milvus.db")


@pytest.fixture
def make_settings(provider: str, request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], StoreSettings]:
    """Settings for a store of `provider` named `collection`; stores made in one test share one engine."""
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    if provider in SESSION_ENGINES:
        url: str | None = request.getfixturevalue(SESSION_ENGINES[provider])
    elif provider == "embedded":
        url = None
    else:
        url = str(tmp_path / provider)

    def make(collection: str = "contract") -> StoreSettings:
        # A store owns its collection on a shared engine; the embedded store owns its data directory.
        return StoreSettings(store_url=url, data_dir=tmp_path / "data" / collection, collection=prefix + collection)

    return make


@pytest.fixture
async def open_store(provider: str, make_settings: Callable[[str], StoreSettings]) -> AsyncIterator[OpenStore]:
    """Opens stores of the provider under test, closed at the end: `await open_store(info=..., collection=...)`."""
    module = importlib.import_module(f"plugkit.plugins.retrieval.stores.{provider}")
    opened: list[VectorStore] = []

    async def open_(info: StoreInfo = INFO, collection: str = "contract") -> VectorStore:
        store: VectorStore = module.create_store(make_settings(collection))
        await store.open(info)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: OpenStore) -> VectorStore:
    return await open_store()
