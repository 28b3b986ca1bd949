"""The retrieval plugin under the real auth methods: every operation guarded, and per-user tenancy with real tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plugkit.plugins.retrieval.app import create_app
from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder
from plugkit.plugins.retrieval.settings import RetrievalSettings
from tests.auth.conformance import check_every_operation_requires_auth
from tests.helpers import asgi_client


@pytest.mark.parametrize("kind", ["service_http", "user_http", "oauth"])
async def test_every_retrieval_operation_rejects_bad_credentials_and_accepts_a_valid_one(
    tmp_path: Path, kind: str, embedder: LocalEmbedder
) -> None:
    outcomes = await check_every_operation_requires_auth(
        lambda settings: create_app(settings, embedder=embedder),
        RetrievalSettings,
        tmp_path,
        kind,  # type: ignore[arg-type]
        memory=True,
    )
    assert {o.operation_id for o in outcomes} >= {"queryDocuments", "upsertDocuments", "getDocument", "search", "fetch"}


async def test_per_user_tenancy_with_real_user_tokens_keeps_each_users_documents_private(
    tmp_path: Path, embedder: LocalEmbedder
) -> None:
    settings = RetrievalSettings(data_dir=tmp_path, auth="user_http", tenancy="per-user", memory=True)
    app = create_app(settings, embedder=embedder)
    async with asgi_client(app) as client:
        tokens = {user: (await app.state.auth.tokens.create(user))[1] for user in ("alice", "bob")}

        def as_user(user: str) -> dict[str, Any]:
            return {"headers": {"Authorization": f"Bearer {tokens[user]}"}}

        document = {"documents": [{"id": "diary", "text": "Alice's secret recipe uses saffron and cardamom."}]}
        assert (await client.post("/upsert", json=document, **as_user("alice"))).status_code == 200
        query = {"queries": [{"query": "secret recipe saffron", "top_k": 3}]}

        alice_hits = (await client.post("/query", json=query, **as_user("alice"))).json()["results"][0]["results"]
        bob_hits = (await client.post("/query", json=query, **as_user("bob"))).json()["results"][0]["results"]
        assert [h["metadata"]["document_id"] for h in alice_hits] == ["diary"]
        assert bob_hits == []
        assert (await client.get("/documents/diary", **as_user("bob"))).status_code == 404
        deleted = await client.request("DELETE", "/delete", json={"ids": ["diary"]}, **as_user("bob"))
        assert deleted.status_code == 200
        assert (await client.get("/documents/diary", **as_user("alice"))).status_code == 200
