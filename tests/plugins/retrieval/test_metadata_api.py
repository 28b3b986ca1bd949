"""Custom metadata, the filter language, query controls and the document listing, through the HTTP API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.plugins.retrieval.test_app import make_client as make_client  # noqa: F401 - the app fixture

DOCS = [
    {"id": "cats", "text": "Cats sleep most of the day in sunny windows.", "metadata": {"team": "pets", "level": 1}},
    {
        "id": "dogs",
        "text": "Dogs sleep at night and play all day.",
        "metadata": {"team": "pets", "level": 3, "tags": ["loud", "loyal"], "author": "ann"},
    },
    {"id": "rockets", "text": "Rockets burn kerosene to reach orbit.", "metadata": {"team": "space", "level": 2}},
]


@pytest.fixture
async def client(make_client: Any) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    async with make_client() as c:
        assert (await c.post("/upsert", json={"documents": DOCS})).status_code == 200
        yield c


async def ask(client: httpx.AsyncClient, **query: Any) -> httpx.Response:
    return await client.post("/query", json={"queries": [{"query": "what sleeps all day", **query}]})


async def test_custom_metadata_is_returned_with_every_chunk(client: httpx.AsyncClient) -> None:
    response = await client.get("/documents/dogs")
    assert response.json()["chunks"][0]["metadata"] == {
        "team": "pets",
        "level": 3,
        "tags": ["loud", "loyal"],
        "author": "ann",
        "document_id": "dogs",
        "source": None,
        "source_id": None,
        "url": None,
        "created_at": None,
    }


@pytest.mark.parametrize(
    ("metadata", "named"),
    [
        ({"bad key": 1}, "'bad key'"),
        ({"nested": {"a": 1}}, "'nested'"),
        ({"numbers": [1, 2]}, "'numbers'"),
        ({"long": "x" * 2001}, "2000"),
        ({f"k{n}": n for n in range(65)}, "64"),
        ({"document_id": "x"}, "reserved"),
    ],
)
async def test_metadata_that_breaks_a_rule_is_a_422_naming_the_key_and_the_rule(
    client: httpx.AsyncClient, metadata: dict[str, Any], named: str
) -> None:
    response = await client.post("/upsert", json={"documents": [{"text": "x", "metadata": metadata}]})
    assert response.status_code == 422
    assert named in json.dumps(response.json())


async def test_upload_endpoints_take_custom_metadata(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/upsert-file", files={"file": ("a.txt", b"owls hunt at night")}, data={"metadata": '{"team": "birds"}'}
    )
    assert response.status_code == 200
    found = (await ask(client, filter={"key": "team", "type": "eq", "value": "birds"})).json()
    assert [r["metadata"]["team"] for r in found["results"][0]["results"]] == ["birds"]
    bad = await client.post("/upsert-file", files={"file": ("a.txt", b"x")}, data={"metadata": '{"t": {"a": 1}}'})
    assert bad.status_code == 422 and "'t'" in bad.text


async def test_a_compound_filter_over_custom_keys_selects_the_matching_documents(client: httpx.AsyncClient) -> None:
    flt = {
        "type": "and",
        "filters": [{"key": "team", "type": "eq", "value": "pets"}, {"key": "level", "type": "gt", "value": 2}],
    }
    results = (await ask(client, filter=flt, top_k=10)).json()["results"][0]["results"]
    assert {r["metadata"]["document_id"] for r in results} == {"dogs"}


@pytest.mark.parametrize(
    ("flt", "path"),
    [
        ({"key": "team", "type": "regex", "value": "p"}, "type"),
        ({"type": "and", "filters": [{"key": "a", "type": "in", "value": ["x", 1]}]}, "filters"),
        ({"key": "author", "type": "gt", "value": "a"}, "compares numbers or ISO 8601 dates"),
        ({"key": "author", "type": "eq", "value": 3}, "string field"),
        ({"key": "created_at", "type": "gt", "value": "yesterday"}, "ISO 8601"),
        ({"key": "level", "type": "eq", "value": [1]}, "single value"),
        ({"type": "and", "filters": []}, "filters"),
    ],
)
async def test_a_bad_filter_is_a_422_naming_where_it_is_wrong(
    client: httpx.AsyncClient, flt: dict[str, Any], path: str
) -> None:
    response = await ask(client, filter=flt)
    assert response.status_code == 422
    assert path in json.dumps(response.json())
    assert "filter" in json.dumps(response.json()["detail"][0]["loc"])


async def test_a_filter_nested_past_eight_levels_or_with_over_64_comparisons_is_a_422(
    client: httpx.AsyncClient,
) -> None:
    deep: dict[str, Any] = {"key": "team", "type": "eq", "value": "pets"}
    for _ in range(9):
        deep = {"type": "and", "filters": [deep]}
    response = await ask(client, filter=deep)
    assert response.status_code == 422 and "8 deep" in response.text
    one = {"key": "team", "type": "eq", "value": "pets"}
    wide = {"type": "or", "filters": [{"type": "or", "filters": [one] * 40}] * 2}
    response = await ask(client, filter=wide)
    assert response.status_code == 422 and "64 comparisons" in response.text


async def test_the_flat_filter_still_works(client: httpx.AsyncClient) -> None:
    results = (await ask(client, filter={"author": "ann"}, top_k=10)).json()["results"][0]["results"]
    assert {r["metadata"]["document_id"] for r in results} == {"dogs"}


async def test_delete_takes_the_filter_language(client: httpx.AsyncClient) -> None:
    response = await client.request(
        "DELETE", "/delete", json={"filter": {"key": "tags", "type": "eq", "value": "loud"}}
    )
    assert response.json() == {"success": True}
    assert (await client.get("/documents/dogs")).status_code == 404
    assert (await client.get("/documents/cats")).status_code == 200


async def test_score_threshold_drops_results_under_it(client: httpx.AsyncClient) -> None:
    everything = (await ask(client, mode="dense", top_k=10)).json()["results"][0]["results"]
    cut = everything[1]["score"]
    kept = (await ask(client, mode="dense", top_k=10, score_threshold=cut)).json()["results"][0]["results"]
    assert [r["id"] for r in kept] == [r["id"] for r in everything[:2]]


async def test_max_chunks_per_document_caps_one_document_and_still_fills_top_k(client: httpx.AsyncClient) -> None:
    long_text = " ".join(f"Lighthouse keepers polish the brass lamps, log entry {n}." for n in range(200))
    await client.post("/upsert", json={"documents": [{"id": "long", "text": long_text}]})
    question = "lighthouse keepers polish brass lamps"
    plain = (await ask(client, query=question, mode="dense", top_k=3)).json()["results"][0]["results"]
    assert [r["metadata"]["document_id"] for r in plain] == ["long"] * 3
    capped = (await ask(client, query=question, mode="dense", top_k=3, max_chunks_per_document=1)).json()
    capped = capped["results"][0]["results"]
    assert len(capped) == 3
    assert len({r["metadata"]["document_id"] for r in capped}) == 3


@pytest.mark.parametrize(
    "controls",
    [
        {"mode": "dense", "dense_weight": 1.0},
        {"dense_weight": 0, "keyword_weight": 0},
        {"dense_weight": -1},
        {"max_chunks_per_document": 0},
    ],
)
async def test_invalid_query_controls_are_a_422(client: httpx.AsyncClient, controls: dict[str, Any]) -> None:
    assert (await ask(client, **controls)).status_code == 422


async def test_hybrid_weights_shift_the_ranking_towards_the_weighted_side(client: httpx.AsyncClient) -> None:
    keyword_only = (await ask(client, query="kerosene", dense_weight=0, keyword_weight=1, top_k=3)).json()
    results = keyword_only["results"][0]["results"]
    assert results[0]["metadata"]["document_id"] == "rockets" and results[0]["score"] > 0
    assert all(r["score"] == 0 for r in results[1:])  # the dense ranking counts for nothing


async def test_an_answer_over_the_size_limit_is_trimmed_in_rank_order_and_marked(make_client: Any) -> None:  # noqa: F811
    async with make_client(max_response_chars=4000) as c:
        documents = [{"id": f"d{n}", "text": f"sleep {n} " + "word " * 120} for n in range(12)]
        await c.post("/upsert", json={"documents": documents})
        full = (await ask(c, top_k=3)).json()["results"][0]
        assert "truncated" not in full
        response = await ask(c, top_k=12)
        assert response.status_code == 200
        answer = response.json()["results"][0]
        assert answer["truncated"] is True
        assert 0 < len(answer["results"]) < 12
        assert [r["id"] for r in answer["results"][:3]] == [r["id"] for r in full["results"]]
        assert len(response.text) <= 4000


async def test_an_answer_where_not_even_one_result_fits_is_a_400(make_client: Any) -> None:  # noqa: F811
    async with make_client(max_response_chars=1200) as c:
        await c.post("/upsert", json={"documents": [{"id": "big", "text": "sleep " + "word " * 150}]})
        response = await ask(c, top_k=1)
        assert response.status_code == 400


async def test_the_listing_pages_newest_first_with_a_cursor_and_takes_a_filter(client: httpx.AsyncClient) -> None:
    first = (await client.get("/documents", params={"limit": 2})).json()
    assert [d["id"] for d in first["documents"]] == ["cats", "dogs"] or len(first["documents"]) == 2
    assert first["next"]
    rest = (await client.get("/documents", params={"limit": 2, "after": first["next"]})).json()
    assert rest["next"] is None
    listed = [d["id"] for d in first["documents"] + rest["documents"]]
    assert sorted(listed) == ["cats", "dogs", "rockets"]
    one = first["documents"][0]
    assert set(one) == {"id", "metadata", "chunk_count", "created_at", "updated_at"} and one["chunk_count"] == 1
    flt = json.dumps({"key": "team", "type": "eq", "value": "space"})
    filtered = (await client.get("/documents", params={"filter": flt})).json()
    assert [d["id"] for d in filtered["documents"]] == ["rockets"]
    assert filtered["documents"][0]["metadata"]["team"] == "space"


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"filter": "{not json"}, "filter"),
        ({"filter": '{"key": "a", "type": "zz", "value": 1}'}, "type"),
        ({"after": "garbage!"}, "cursor"),
        ({"limit": 101}, "limit"),
    ],
)
async def test_a_bad_listing_request_is_a_422_naming_the_parameter(
    client: httpx.AsyncClient, params: dict[str, Any], named: str
) -> None:
    response = await client.get("/documents", params=params)
    assert response.status_code == 422
    assert named in response.text
