"""The connectors' search and fetch: whole documents by REST and by the MCP tools named `search` and `fetch`, with
exactly the shapes ChatGPT's connectors and deep research read, and per-user tenancy kept."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import jsonschema
import pytest
from fastapi import FastAPI
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from plugkit.mcp import mount_mcp
from plugkit.plugins.retrieval.app import create_app
from plugkit.plugins.retrieval.chunking import HFTokenizer
from plugkit.plugins.retrieval.connector import document_title, join_chunks
from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder
from plugkit.plugins.retrieval.settings import RetrievalSettings
from tests.helpers import PluginServer

DOCS = [
    {
        "id": "volcano",
        "text": "Volcanoes erupt when magma rises through the crust and lava pours out.",
        "metadata": {"source": "file", "source_id": "volcanoes.md", "url": "https://example.com/volcanoes"},
    },
    {"id": "bread", "text": "Sourdough bread rises slowly because of wild yeast in the starter."},
]
# Numbered sentences, so the text makes several chunks and each sentence can be found exactly once.
LONG_TEXT = " ".join(f"Sentence number {n} tells of the river crossing at mile {n * 7}." for n in range(120))


def sentence_count(text: str, n: int) -> int:
    return text.count(f"Sentence number {n} tells")


@asynccontextmanager
async def retrieval_app(tmp_path: Path, embedder: LocalEmbedder, tokenizer: HFTokenizer, **options: Any) -> Any:
    app = mount_mcp(create_app(RetrievalSettings(data_dir=tmp_path, **options), embedder=embedder, tokenizer=tokenizer))
    async with app.router.lifespan_context(app):
        yield app


def rest_client(app: FastAPI) -> httpx.AsyncClient:
    """A client reaching an app whose lifespan already runs."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


@asynccontextmanager
async def mcp_client(app: FastAPI, headers: dict[str, str] | None = None) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), headers=headers or {})
    async with http, Client(streamable_http_client("http://127.0.0.1/mcp", http_client=http)) as client:
        yield client


@pytest.fixture
def seeded(tmp_path: Path, embedder: LocalEmbedder, tokenizer: HFTokenizer) -> Any:
    """The app running (in the test's own task, as the MCP session manager needs) with DOCS and a long document."""

    @asynccontextmanager
    async def running() -> AsyncIterator[FastAPI]:
        async with retrieval_app(tmp_path, embedder, tokenizer, chunk_tokens=64, chunk_overlap=16) as app:
            async with rest_client(app) as client:
                documents = [*DOCS, {"id": "river", "text": LONG_TEXT, "metadata": {"source_id": "river.txt"}}]
                assert (await client.post("/upsert", json={"documents": documents})).status_code == 200
            yield app

    return running


async def test_search_answers_documents_with_id_title_and_url_best_first(seeded: Any) -> None:
    async with seeded() as app:
        async with rest_client(app) as client:
            response = await client.get("/search", params={"query": "lava and magma eruptions"})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert results[0] == {"id": "volcano", "title": "volcanoes.md", "url": "https://example.com/volcanoes"}
        assert all(set(r) == {"id", "title", "url"} for r in results)


async def test_a_document_found_by_several_chunks_is_listed_once_and_without_a_url_its_url_is_null(
    seeded: Any,
) -> None:
    async with seeded() as app:
        async with rest_client(app) as client:
            results = (await client.get("/search", params={"query": "sentence about the river crossing"})).json()[
                "results"
            ]
        ids = [r["id"] for r in results]
        assert ids[0] == "river" and len(ids) == len(set(ids))
        assert results[0]["url"] is None


async def test_fetch_answers_the_whole_document_joined_from_its_chunks_in_order_with_each_part_once(
    seeded: Any,
) -> None:
    async with seeded() as app:
        async with rest_client(app) as client:
            chunks = (await client.get("/documents/river")).json()["chunks"]
            response = await client.get("/fetch", params={"id": "river"})
        assert len(chunks) > 3  # several overlapping chunks were joined
        document = response.json()
        assert set(document) == {"id", "title", "text", "url", "metadata"}
        assert document["id"] == "river" and document["title"] == "river.txt" and document["url"] is None
        assert document["text"] == LONG_TEXT
        assert all(sentence_count(document["text"], n) == 1 for n in range(120))


async def test_fetch_of_an_unknown_id_is_a_404_naming_it(seeded: Any) -> None:
    async with seeded() as app:
        async with rest_client(app) as client:
            response = await client.get("/fetch", params={"id": "atlantis"})
        assert response.status_code == 404 and "atlantis" in response.json()["detail"]


async def test_a_blank_search_is_a_422_that_says_so(seeded: Any) -> None:
    async with seeded() as app:
        async with rest_client(app) as client:
            blank = await client.get("/search", params={"query": "   "})
            missing = await client.get("/search")
        assert blank.status_code == 422 and "blank" in blank.json()["detail"]
        assert missing.status_code == 422


async def test_a_document_over_the_response_limit_is_fetched_cut_short_saying_so(
    tmp_path: Path, embedder: LocalEmbedder, tokenizer: HFTokenizer
) -> None:
    async with retrieval_app(tmp_path, embedder, tokenizer, max_response_chars=6_000) as app:
        async with rest_client(app) as client:
            await client.post("/upsert", json={"documents": [{"id": "river", "text": LONG_TEXT}]})
            response = await client.get("/fetch", params={"id": "river"})
    assert response.status_code == 200, response.text
    assert len(response.text) <= 6_000
    text = response.json()["text"]
    assert text.endswith(f"of its {len(LONG_TEXT)} characters are shown]")
    assert LONG_TEXT.startswith(text.rsplit("\n[", 1)[0])


async def test_the_mcp_tools_are_named_search_and_fetch_and_their_output_conforms(seeded: Any) -> None:
    async with seeded() as app:
        async with mcp_client(app) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            found = await client.call_tool("search", {"query": "volcano lava"})
            fetched = await client.call_tool("fetch", {"id": "volcano"})
        assert tools["search"].input_schema["required"] == ["query"] and list(
            tools["search"].input_schema["properties"]
        ) == ["query"]
        assert list(tools["fetch"].input_schema["properties"]) == ["id"]
        assert tools["search"].annotations.read_only_hint and tools["fetch"].annotations.read_only_hint
        assert not found.is_error and found.structured_content["results"][0]["id"] == "volcano"
        assert fetched.structured_content == {
            "id": "volcano",
            "title": "volcanoes.md",
            "text": DOCS[0]["text"],
            "url": "https://example.com/volcanoes",
            "metadata": {"source": "file", "source_id": "volcanoes.md", "url": "https://example.com/volcanoes"},
        }
        for name, result in (("search", found), ("fetch", fetched)):
            jsonschema.validate(result.structured_content, tools[name].output_schema)


async def test_under_per_user_tenancy_one_user_cannot_search_or_fetch_anothers_document(
    tmp_path: Path, embedder: LocalEmbedder, tokenizer: HFTokenizer
) -> None:
    options = {"auth": "user_http", "tenancy": "per-user"}
    async with retrieval_app(tmp_path, embedder, tokenizer, **options) as app:
        tokens = {user: (await app.state.auth.tokens.create(user))[1] for user in ("alice", "bob")}
        alice, bob = ({"Authorization": f"Bearer {tokens[u]}"} for u in ("alice", "bob"))
        async with rest_client(app) as client:
            secret = {"documents": [{"id": "diary", "text": "Alice's secret recipe uses saffron and cardamom."}]}
            assert (await client.post("/upsert", json=secret, headers=alice)).status_code == 200
            rest: dict[str, httpx.Response] = {
                "alice_search": await client.get("/search", params={"query": "saffron recipe"}, headers=alice),
                "bob_search": await client.get("/search", params={"query": "saffron recipe"}, headers=bob),
                "alice_fetch": await client.get("/fetch", params={"id": "diary"}, headers=alice),
                "bob_fetch": await client.get("/fetch", params={"id": "diary"}, headers=bob),
            }
        async with mcp_client(app, bob) as client:
            bob_found = await client.call_tool("search", {"query": "saffron recipe"})
            bob_fetched = await client.call_tool("fetch", {"id": "diary"})
        async with mcp_client(app, alice) as client:
            alice_fetched = await client.call_tool("fetch", {"id": "diary"})
    assert [r["id"] for r in rest["alice_search"].json()["results"]] == ["diary"]
    assert rest["bob_search"].json() == {"results": []}
    assert rest["alice_fetch"].json()["text"] == secret["documents"][0]["text"]
    assert rest["bob_fetch"].status_code == 404
    assert bob_found.structured_content == {"results": []}
    assert bob_fetched.is_error and "HTTP 404" in bob_fetched.content[0].text  # type: ignore[union-attr]
    assert alice_fetched.structured_content["id"] == "diary"


def test_chunks_that_overlap_are_joined_with_the_repeated_part_once() -> None:
    assert join_chunks(["The cat sat on", "sat on the mat."], overlapping=True) == "The cat sat on the mat."


def test_chunks_that_do_not_overlap_are_joined_with_a_space_even_when_a_word_repeats() -> None:
    assert join_chunks(["Say the", "the end."], overlapping=False) == "Say the the end."
    assert join_chunks(["One.", "Two."], overlapping=True) == "One. Two."


def test_a_documents_title_is_its_title_metadata_else_its_source_id_else_its_id() -> None:
    assert document_title("d1", {"title": "Quarterly plan", "source_id": "plan.md"}) == "Quarterly plan"
    assert document_title("d1", {"source_id": "plan.md"}) == "plan.md"
    assert document_title("d1", {"title": "  ", "author": "ann"}) == "d1"


@pytest.mark.slow
def test_a_served_retrieval_plugin_answers_search_and_fetch_to_the_sdk_client_over_http(tmp_path: Path) -> None:
    server = PluginServer("retrieval", "--mcp", "--data-dir", str(tmp_path)).start(timeout=300)  # loads the model
    try:
        assert httpx.post(f"{server.base_url}/upsert", json={"documents": DOCS}, timeout=60).status_code == 200

        async def session() -> tuple[list[str], Any, Any]:
            async with Client(f"{server.base_url}/mcp") as client:
                names = [t.name for t in (await client.list_tools()).tools]
                found = await client.call_tool("search", {"query": "why does sourdough rise"})
                fetched = await client.call_tool("fetch", {"id": found.structured_content["results"][0]["id"]})
                return names, found, fetched

        names, found, fetched = anyio.run(session)
    finally:
        server.stop()
    assert {"search", "fetch"} <= set(names)
    assert found.structured_content["results"][0] == {"id": "bread", "title": "bread", "url": None}
    assert fetched.structured_content["text"] == DOCS[1]["text"]
    assert json.loads(fetched.content[0].text) == fetched.structured_content  # type: ignore[union-attr]
