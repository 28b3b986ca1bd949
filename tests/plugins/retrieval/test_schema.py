"""The retrieval store's schema version: a release 0.1.0 store opens and is versioned, a newer one is refused."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from plugkit.plugins.retrieval.app import create_app
from plugkit.plugins.retrieval.chunking import HFTokenizer
from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder
from plugkit.plugins.retrieval.settings import RetrievalSettings
from plugkit.plugins.retrieval.stores.base import StoreMismatchError
from tests.helpers import asgi_client
from tests.test_schema import RELEASE_0_1_0, versions


def user_version(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


async def test_a_release_0_1_0_store_is_versioned_and_its_documents_found(
    tmp_path: Path, embedder: LocalEmbedder, tokenizer: HFTokenizer
) -> None:
    data = Path(shutil.copytree(RELEASE_0_1_0, tmp_path / "data"))
    assert user_version(data / "retrieval" / "retrieval.db") == 0
    app = create_app(RetrievalSettings(data_dir=data), embedder=embedder, tokenizer=tokenizer)
    async with asgi_client(app) as client:
        found = await client.post("/query", json={"queries": [{"query": "honey bees", "top_k": 1}]})
    assert found.json()["results"][0]["results"][0]["id"] == "doc1_0"
    assert user_version(data / "retrieval" / "retrieval.db") == 2
    assert versions(data / "retrieval_auth.db") == {"ratelimit": "ratelimit_0002"}


async def test_a_store_a_newer_plugkit_wrote_is_refused(
    tmp_path: Path, embedder: LocalEmbedder, tokenizer: HFTokenizer
) -> None:
    data = Path(shutil.copytree(RELEASE_0_1_0, tmp_path / "data"))
    with sqlite3.connect(data / "retrieval" / "retrieval.db") as conn:
        conn.execute("PRAGMA user_version = 7")
    app = create_app(RetrievalSettings(data_dir=data), embedder=embedder, tokenizer=tokenizer)
    with pytest.raises(StoreMismatchError, match="schema version 7, newer than this plugkit's 2"):
        async with asgi_client(app):
            pass
