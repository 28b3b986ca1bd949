from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, HTTPException, Request
from openapi_spec_validator import validate
from sqlalchemy import MetaData

from plugkit.auth.principal import Principal
from plugkit.manifest import UserHttpAuth, validate_manifest
from plugkit.plugins.retrieval.app import create_app
from plugkit.plugins.retrieval.chunking import HFTokenizer
from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder
from plugkit.plugins.retrieval.embeddings.openai import OpenAIEmbedder
from plugkit.plugins.retrieval.settings import RetrievalSettings
from tests.helpers import SHARED_DATA, asgi_client, assert_response_matches_spec
from tests.plugins.retrieval.conftest import EmbeddingsServer
from tests.plugins.retrieval.files import PNG_BYTES, docx_bytes, pdf_bytes

DOCS = [
    {
        "id": "cats",
        "text": "Cats sleep most of the day and like warm sunny windows.",
        "metadata": {"source": "file", "author": "ann", "created_at": "2024-01-05"},
    },
    {
        "id": "rockets",
        "text": "Rockets burn liquid oxygen and kerosene to reach orbit.",
        "metadata": {"source": "email", "author": "bob", "created_at": "2024-06-01T10:00:00Z"},
    },
    {
        "id": "bread",
        "text": "Sourdough bread rises slowly because of wild yeast.",
        "metadata": {"source": "chat", "author": "ann", "created_at": "2024-09-12"},
    },
]


@pytest.fixture
def make_client(tmp_path: Path, embedder: LocalEmbedder, tokenizer: HFTokenizer) -> Any:
    def make(**options: Any) -> Any:
        settings = RetrievalSettings(data_dir=tmp_path, **{k: v for k, v in options.items() if k != "auth_method"})
        app = create_app(settings, embedder=embedder, tokenizer=tokenizer, auth=options.get("auth_method"))
        return asgi_client(app, base_url="http://localhost:5003")

    return make


@pytest.fixture
async def client(make_client: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as c:
        assert (await c.post("/upsert", json={"documents": DOCS})).status_code == 200
        yield c


async def query(client: httpx.AsyncClient, text: str, **options: Any) -> list[dict[str, Any]]:
    response = await client.post("/query", json={"queries": [{"query": text, **options}]})
    assert response.status_code == 200, response.text
    return response.json()["results"][0]["results"]  # type: ignore[no-any-return]


async def delete(client: httpx.AsyncClient, body: Any) -> httpx.Response:
    return await client.request("DELETE", "/delete", json=body)


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
async def test_the_relevant_document_comes_first_in_every_mode(client: httpx.AsyncClient, mode: str) -> None:
    results = await query(client, "which animal sleeps in sunny windows", mode=mode)
    assert results[0]["id"] == "cats_0"
    assert results[0]["metadata"]["document_id"] == "cats"
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)


async def test_top_k_defaults_to_3_and_bounds_the_results(client: httpx.AsyncClient) -> None:
    assert len(await query(client, "anything", mode="dense")) == 3
    assert len(await query(client, "anything", mode="dense", top_k=1)) == 1


async def test_top_k_over_100_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/query", json={"queries": [{"query": "x", "top_k": 101}]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == "top_k"


async def test_an_unknown_mode_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/query", json={"queries": [{"query": "x", "mode": "fuzzy"}]})
    assert response.status_code == 422


async def test_filters_restrict_results_by_author_source_and_dates(client: httpx.AsyncClient) -> None:
    ann = await query(client, "food and animals", filter={"author": "ann"}, top_k=10)
    assert {r["metadata"]["document_id"] for r in ann} == {"cats", "bread"}
    late = await query(client, "anything", filter={"start_date": "2024-05-01", "end_date": "2024-12-31"}, top_k=10)
    assert {r["metadata"]["document_id"] for r in late} == {"rockets", "bread"}
    email = await query(client, "anything", filter={"source": "email"}, top_k=10)
    assert [r["metadata"]["document_id"] for r in email] == ["rockets"]


async def test_an_unparseable_date_filter_is_a_422_naming_the_value(client: httpx.AsyncClient) -> None:
    response = await client.post("/query", json={"queries": [{"query": "x", "filter": {"start_date": "last week"}}]})
    assert response.status_code == 422
    assert "last week" in response.json()["detail"][0]["msg"]


async def test_an_unknown_filter_field_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/query", json={"queries": [{"query": "x", "filter": {"colour": "red"}}]})
    assert response.status_code == 422


async def test_upsert_without_ids_makes_new_ids(make_client: Any) -> None:
    async with make_client() as c:
        response = await c.post("/upsert", json={"documents": [{"text": "one"}, {"text": "two"}]})
        ids = response.json()["ids"]
        assert len(ids) == 2 and ids[0] != ids[1]
        assert (await c.get(f"/documents/{ids[1]}")).json()["chunks"][0]["text"] == "two"


async def test_re_upserting_a_document_replaces_its_chunks(client: httpx.AsyncClient) -> None:
    new = {"id": "cats", "text": "Dogs fetch sticks in the park.", "metadata": {"author": "cy"}}
    assert (await client.post("/upsert", json={"documents": [new]})).json() == {"ids": ["cats"]}
    chunks = (await client.get("/documents/cats")).json()["chunks"]
    assert [c["text"] for c in chunks] == ["Dogs fetch sticks in the park."]
    assert all("Cats sleep" not in r["text"] for r in await query(client, "cats sleep windows", top_k=10))


async def test_a_long_document_is_split_into_ordered_chunks(make_client: Any) -> None:
    text = " ".join(f"Paragraph {i} describes a different topic in some detail." for i in range(80))
    async with make_client(chunk_tokens=64, chunk_overlap=0) as c:
        await c.post("/upsert", json={"documents": [{"id": "long", "text": text}]})
        body = (await c.get("/documents/long")).json()
    ids = [chunk["id"] for chunk in body["chunks"]]
    assert len(ids) > 5
    assert ids == [f"long_{n}" for n in range(len(ids))]
    assert " ".join(chunk["text"] for chunk in body["chunks"]) == text


async def test_an_empty_document_text_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/upsert", json={"documents": [{"text": "ok"}, {"text": "   "}]})
    assert response.status_code == 422
    assert "documents[1]" in response.json()["detail"]


async def test_a_bad_created_at_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/upsert", json={"documents": [{"text": "x", "metadata": {"created_at": "soon"}}]})
    assert response.status_code == 422


async def test_fetching_an_unknown_document_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/documents/nope")
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


async def test_a_delete_naming_nothing_is_a_400(client: httpx.AsyncClient) -> None:
    for body in ({}, {"ids": []}, {"filter": {}}, {"delete_all": False}):
        response = await delete(client, body)
        assert response.status_code == 400, body
        assert "ids" in response.json()["detail"]


async def test_delete_by_id_by_filter_and_all(client: httpx.AsyncClient) -> None:
    assert (await delete(client, {"ids": ["cats"]})).json() == {"success": True}
    assert (await client.get("/documents/cats")).status_code == 404
    assert (await delete(client, {"filter": {"author": "bob"}})).status_code == 200
    assert (await client.get("/documents/rockets")).status_code == 404
    assert (await client.get("/documents/bread")).status_code == 200
    assert (await delete(client, {"delete_all": True})).status_code == 200
    assert await query(client, "bread") == []


async def test_upsert_file_reads_a_docx_sent_as_octet_stream(client: httpx.AsyncClient) -> None:
    data = docx_bytes(["The lighthouse keeper logs every passing ship."])
    files = {"file": ("upload", data, "application/octet-stream")}
    response = await client.post("/upsert-file", files=files, data={"metadata": json.dumps({"author": "kim"})})
    assert response.status_code == 200, response.text
    (doc_id,) = response.json()["ids"]
    chunk = (await client.get(f"/documents/{doc_id}")).json()["chunks"][0]
    assert "lighthouse keeper" in chunk["text"] and chunk["metadata"]["author"] == "kim"


async def test_upsert_file_with_metadata_that_is_not_json_is_a_422(client: httpx.AsyncClient) -> None:
    files = {"file": ("a.txt", b"hello", "text/plain")}
    response = await client.post("/upsert-file", files=files, data={"metadata": "{author: kim"})
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["detail"]


async def test_upsert_file_of_an_image_is_a_415_naming_the_type(client: httpx.AsyncClient) -> None:
    response = await client.post("/upsert-file", files={"file": ("a.pdf", PNG_BYTES, "application/pdf")})
    assert response.status_code == 415
    assert "PNG image" in response.json()["detail"]


async def test_upsert_file_of_a_corrupt_pdf_is_a_422_naming_pdf(client: httpx.AsyncClient) -> None:
    response = await client.post("/upsert-file", files={"file": ("a.pdf", b"%PDF-1.7\n%%garbage", "application/pdf")})
    assert response.status_code == 422
    assert "pdf" in response.json()["detail"]


async def test_an_upload_over_the_limit_is_a_413(make_client: Any) -> None:
    async with make_client(max_upload_bytes=1000) as c:
        response = await c.post("/upsert-file", files={"file": ("big.txt", b"a " * 600, "text/plain")})
        assert response.status_code == 413
        response = await c.post("/upsert-file", files={"file": ("huge.txt", b"a " * 600_000, "text/plain")})
        assert response.status_code == 413


async def test_a_file_sent_as_base64_json_is_added(client: httpx.AsyncClient) -> None:
    body = {
        "filename": "notes.pdf",
        "content_base64": base64.b64encode(pdf_bytes(["Volcanoes erupt lava."])).decode(),
        "id": "volcano",
        "metadata": {"source": "file"},
    }
    response = await client.post("/upsert-file-json", json=body)
    assert response.json() == {"ids": ["volcano"]}
    assert (await query(client, "lava eruption"))[0]["metadata"]["document_id"] == "volcano"


async def test_invalid_base64_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/upsert-file-json", json={"filename": "a.txt", "content_base64": "%%%"})
    assert response.status_code == 422
    assert "base64" in response.json()["detail"]


async def test_the_model_sees_query_search_fetch_and_listing_but_not_upsert_by_default(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    validate(spec)
    operations = {op["operationId"] for item in spec["paths"].values() for op in item.values()}
    assert operations == {"queryDocuments", "getDocument", "listDocuments", "search", "fetch"}


async def test_memory_mode_exposes_upsert_with_the_save_for_later_intent(make_client: Any) -> None:
    async with make_client(memory=True) as c:
        spec = (await c.get("/openapi.json")).json()
        manifest = (await c.get("/.well-known/ai-plugin.json")).json()
    validate(spec)
    upsert = spec["paths"]["/upsert"]["post"]
    assert upsert["operationId"] == "upsertDocuments"
    assert "Confirm with the user before saving" in upsert["description"]
    assert "save information for later" in manifest["description_for_model"]
    assert "upsertFileContent" in {op["operationId"] for item in spec["paths"].values() for op in item.values()}


@pytest.mark.parametrize("memory", [False, True])
async def test_the_manifest_passes_the_strict_limits(make_client: Any, memory: bool) -> None:
    async with make_client(memory=memory) as c:
        manifest = (await c.get("/.well-known/ai-plugin.json")).json()
    assert [p for p in validate_manifest(manifest, "strict") if p.level == "error"] == []
    assert manifest["api"]["url"] == "http://localhost:5003/openapi.yaml"


async def test_responses_match_the_spec(make_client: Any) -> None:
    async with make_client(memory=True) as c:
        spec = (await c.get("/openapi.json")).json()
        responses = [
            await c.post("/upsert", json={"documents": DOCS}),
            await c.post("/upsert", json={"documents": [{"text": " "}]}),
            await c.post("/query", json={"queries": [{"query": "cats", "top_k": 2}]}),
            await c.post("/query", json={"queries": [{"query": "cats", "top_k": 0}]}),
            await c.get("/documents/cats"),
            await c.get("/documents/unknown"),
            await c.get("/search", params={"query": "cats"}),
            await c.get("/search", params={"query": " "}),
            await c.get("/fetch", params={"id": "cats"}),
            await c.get("/fetch", params={"id": "unknown"}),
            await c.post(
                "/upsert-file-json", json={"filename": "x.png", "content_base64": base64.b64encode(PNG_BYTES).decode()}
            ),
        ]
    for response in responses:
        assert_response_matches_spec(spec, response)


async def test_a_refused_embedding_key_is_a_502_that_says_so(
    tmp_path: Path, tokenizer: HFTokenizer, fresh_embeddings_server: EmbeddingsServer
) -> None:
    embedder = OpenAIEmbedder(fresh_embeddings_server.base_url, "sk-wrong", "test-embed", 8)
    app = create_app(RetrievalSettings(data_dir=tmp_path), embedder=embedder, tokenizer=tokenizer)
    async with asgi_client(app) as c:
        response = await c.post("/upsert", json={"documents": [{"text": "hello"}]})
    assert response.status_code == 502
    assert "refused the API key (401)" in response.json()["detail"]


async def test_a_store_built_with_another_model_is_refused_at_startup(
    tmp_path: Path, embedder: LocalEmbedder, tokenizer: HFTokenizer, fresh_embeddings_server: EmbeddingsServer
) -> None:
    async with asgi_client(create_app(RetrievalSettings(data_dir=tmp_path), embedder=embedder, tokenizer=tokenizer)):
        pass
    other = OpenAIEmbedder(fresh_embeddings_server.base_url, fresh_embeddings_server.api_key, "test-embed", 8)
    with pytest.raises(RuntimeError, match="all-MiniLM-L6-v2"):
        async with asgi_client(create_app(RetrievalSettings(data_dir=tmp_path), embedder=other, tokenizer=tokenizer)):
            pass


class BearerUserAuth:
    """A user_http method whose bearer token is the user's name: enough to exercise per-user tenancy here."""

    kind = "user_http"

    def manifest_auth(self, base_url: str) -> UserHttpAuth:
        return UserHttpAuth()

    def security_scheme(self) -> dict[str, Any] | None:
        return {"type": "http", "scheme": "bearer"}

    async def authenticate(self, request: Request) -> Principal:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "a bearer token is needed", headers={"WWW-Authenticate": "Bearer"})
        return Principal(method="user_http", user_id=token)

    def routers(self) -> Sequence[APIRouter]:
        return []

    def metadata(self) -> Sequence[MetaData]:
        return []


async def test_per_user_tenancy_isolates_each_users_documents(make_client: Any) -> None:
    async with make_client(auth="user_http", tenancy="per-user", auth_method=BearerUserAuth()) as c:
        alice, bob = {"Authorization": "Bearer alice"}, {"Authorization": "Bearer bob"}
        await c.post("/upsert", json={"documents": [{"id": "diary", "text": "Alice met the queen."}]}, headers=alice)
        await c.post("/upsert", json={"documents": [{"id": "diary", "text": "Bob fixed his bike."}]}, headers=bob)
        found = (await c.post("/query", json={"queries": [{"query": "queen", "top_k": 10}]}, headers=bob)).json()
        assert [r["text"] for r in found["results"][0]["results"]] == ["Bob fixed his bike."]
        assert (await c.get("/documents/diary", headers=alice)).json()["chunks"][0]["text"] == "Alice met the queen."
        await c.request("DELETE", "/delete", json={"delete_all": True}, headers=bob)
        assert (await c.get("/documents/diary", headers=bob)).status_code == 404
        assert (await c.get("/documents/diary", headers=alice)).status_code == 200
        assert (await c.post("/query", json={"queries": [{"query": "x"}]})).status_code == 401


def test_per_user_tenancy_without_user_auth_is_refused() -> None:
    with pytest.raises(ValueError, match="user_http or oauth"):
        RetrievalSettings(tenancy="per-user")


@pytest.mark.parametrize("batching", [True, False])
async def test_concurrent_queries_answer_the_same_with_and_without_batching(make_client: Any, batching: bool) -> None:
    async with make_client(query_batching=batching) as c:
        assert (await c.post("/upsert", json={"documents": DOCS})).status_code == 200
        questions = ["Which animal sleeps in the sun?", "What fuel do rockets burn?", "Why does bread rise?"]
        responses = await asyncio.gather(
            *(c.post("/query", json={"queries": [{"query": q, "top_k": 1, "mode": "dense"}]}) for q in questions)
        )
        top = [r.json()["results"][0]["results"][0]["metadata"]["document_id"] for r in responses]
        assert top == ["cats", "rockets", "bread"]


async def chunks_with_source_id(client: httpx.AsyncClient, source_id: str) -> list[dict[str, Any]]:
    query = {"query": "anything", "filter": {"source_id": source_id}, "top_k": 100, "mode": "dense"}
    answer = await client.post("/query", json={"queries": [query]})
    return answer.json()["results"][0]["results"]  # type: ignore[no-any-return]


async def test_an_uploaded_file_is_found_by_its_name_and_uploading_it_again_replaces_it(
    client: httpx.AsyncClient,
) -> None:
    upload = {"file": ("notes/minutes.txt", b"The board approved the budget for next year.", "text/plain")}
    first = (await client.post("/upsert-file", files=upload)).json()["ids"]
    again = (await client.post("/upsert-file", files=upload)).json()["ids"]
    assert first == again
    chunks = await chunks_with_source_id(client, "minutes.txt")
    assert len(chunks) == 1 and chunks[0]["metadata"]["source"] == "file"
    assert chunks[0]["metadata"]["document_id"] == first[0]


async def test_files_that_share_a_name_but_not_their_content_are_two_documents(client: httpx.AsyncClient) -> None:
    one = (await client.post("/upsert-file", files={"file": ("a.txt", b"Apples are red.", "text/plain")})).json()
    two = (await client.post("/upsert-file", files={"file": ("a.txt", b"Pears are green.", "text/plain")})).json()
    assert one["ids"] != two["ids"]
    assert len(await chunks_with_source_id(client, "a.txt")) == 2


async def test_an_id_form_field_names_the_document_and_metadata_may_set_its_own_source_id(
    client: httpx.AsyncClient,
) -> None:
    files = {"file": ("report.txt", b"Quarterly revenue grew by four percent.", "text/plain")}
    data = {"id": "q3-report", "metadata": json.dumps({"source_id": "finance/q3"})}
    assert (await client.post("/upsert-file", files=files, data=data)).json()["ids"] == ["q3-report"]
    [chunk] = (await client.get("/documents/q3-report")).json()["chunks"]
    assert chunk["metadata"]["source_id"] == "finance/q3"
    edited = {"file": ("report.txt", b"Quarterly revenue grew by five percent.", "text/plain")}
    assert (await client.post("/upsert-file", files=edited, data={"id": "q3-report"})).json()["ids"] == ["q3-report"]
    [chunk] = (await client.get("/documents/q3-report")).json()["chunks"]
    assert "five percent" in chunk["text"] and chunk["metadata"]["source_id"] == "report.txt"


async def test_an_id_form_field_over_512_characters_is_a_422_naming_it(client: httpx.AsyncClient) -> None:
    files = {"file": ("a.txt", b"Some text.", "text/plain")}
    response = await client.post("/upsert-file", files=files, data={"id": "x" * 513})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "id"]


MARKDOWN_WITH_LINKS = b"""# Tides

![build](https://img.example/badge.svg)

The [moon](https://en.example/wiki/Moon) pulls the oceans into tides; see [the moon](https://en.example/wiki/Moon)
again and [NOAA](https://tides.example/noaa).
"""


async def test_a_markdown_upload_keeps_its_links_as_filterable_metadata(client: httpx.AsyncClient) -> None:
    response = await client.post("/upsert-file", files={"file": ("tides.md", MARKDOWN_WITH_LINKS, "text/markdown")})
    assert response.status_code == 200, response.text
    found = await query(
        client, "moon tides", filter={"key": "links", "type": "eq", "value": "https://tides.example/noaa"}
    )
    assert [r["metadata"]["links"] for r in found] == [["https://en.example/wiki/Moon", "https://tides.example/noaa"]]
    assert "https://en.example" not in found[0]["text"]
    other = await query(
        client, "moon tides", filter={"key": "links", "type": "eq", "value": "https://img.example/badge.svg"}
    )
    assert other == []


async def test_links_given_as_metadata_win_over_those_of_the_markdown(client: httpx.AsyncClient) -> None:
    body = {
        "filename": "tides.md",
        "content_base64": base64.b64encode(MARKDOWN_WITH_LINKS).decode(),
        "metadata": {"links": ["https://mine.example/"]},
    }
    assert (await client.post("/upsert-file-json", json=body)).status_code == 200
    found = await query(client, "moon tides", top_k=1)
    assert [r["metadata"]["links"] for r in found] == [["https://mine.example/"]]


async def test_a_markdown_upload_with_too_many_or_too_long_links_is_added_with_those_that_fit(
    client: httpx.AsyncClient,
) -> None:
    long_url = "https://long.example/" + "a" * 2000
    lines = [f"[page {n}](https://many.example/{n})" for n in range(150)]
    markdown = f"Lighthouses guide ships. [long]({long_url})\n\n" + "\n\n".join(lines)
    upload = {"file": ("lights.md", markdown.encode(), "text/markdown")}
    response = await client.post("/upsert-file", files=upload)
    assert response.status_code == 200, response.text
    links = (await query(client, "lighthouses guide ships", top_k=1))[0]["metadata"]["links"]
    assert links == [f"https://many.example/{n}" for n in range(100)]


async def test_a_file_of_many_batches_stores_each_chunk_with_its_own_vector_and_the_same_ids_again(
    client: httpx.AsyncClient,
) -> None:
    with (SHARED_DATA / "scifact" / "corpus.jsonl").open() as lines:
        abstracts = [json.loads(line)["text"] for line, _ in zip(lines, range(30), strict=False)]
    upload = {"file": ("abstracts.md", "\n\n".join(abstracts).encode(), "text/markdown")}
    first = (await client.post("/upsert-file", files=upload)).json()["ids"]
    again = (await client.post("/upsert-file", files=upload)).json()["ids"]
    assert first == again
    chunks = await chunks_with_source_id(client, "abstracts.md")
    assert len(chunks) > 16  # more than one batch of the test embedder, so the CPU workers embed it
    found = []
    for start in range(0, len(chunks), 8):  # a few queries a request keep each answer under the size limit
        queries = [{"query": chunk["text"], "top_k": 1, "mode": "dense"} for chunk in chunks[start : start + 8]]
        answer = (await client.post("/query", json={"queries": queries})).json()["results"]
        found += [result["results"][0]["id"] if result["results"] else None for result in answer]
    assert found == [chunk["id"] for chunk in chunks]
