from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from plugkit.manifest import validate_manifest
from plugkit.plugins.todo.app import create_app
from plugkit.plugins.todo.settings import TodoSettings
from tests.helpers import asgi_client, assert_response_matches_spec


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(TodoSettings(data_dir=tmp_path)), base_url="http://localhost:5002") as c:
        yield c


@pytest.fixture
async def spec(client: httpx.AsyncClient) -> dict[str, Any]:
    return (await client.get("/openapi.json")).json()  # type: ignore[no-any-return]


async def delete(client: httpx.AsyncClient, url: str, body: Any) -> httpx.Response:
    return await client.request("DELETE", url, json=body)


async def test_added_todos_are_listed_in_order_with_ids_and_times(client: httpx.AsyncClient) -> None:
    for text in ("buy milk", "walk the dog"):
        assert (await client.post("/todos/alice", json={"todo": text})).status_code == 200
    body = (await client.get("/todos/alice")).json()
    assert body["todos"] == ["buy milk", "walk the dog"]
    assert [i["todo"] for i in body["items"]] == body["todos"]
    assert body["items"][0]["id"] < body["items"][1]["id"]
    assert all(i["created_at"].endswith("Z") or "+00:00" in i["created_at"] for i in body["items"])


async def test_a_new_user_has_an_empty_list(client: httpx.AsyncClient) -> None:
    assert (await client.get("/todos/nobody")).json() == {"todos": [], "items": []}


async def test_users_lists_are_separate(client: httpx.AsyncClient) -> None:
    await client.post("/todos/alice", json={"todo": "a"})
    await client.post("/todos/bob", json={"todo": "b"})
    assert (await client.get("/todos/bob")).json()["todos"] == ["b"]


async def test_delete_by_index_removes_that_todo(client: httpx.AsyncClient) -> None:
    for text in ("a", "b", "c"):
        await client.post("/todos/alice", json={"todo": text})
    response = await delete(client, "/todos/alice", {"todo_idx": 1})
    assert response.status_code == 200 and response.json()["deleted"]["todo"] == "b"
    assert (await client.get("/todos/alice")).json()["todos"] == ["a", "c"]


async def test_delete_by_id_does_not_shift_when_another_item_goes(client: httpx.AsyncClient) -> None:
    ids = [(await client.post("/todos/alice", json={"todo": t})).json()["id"] for t in ("a", "b", "c")]
    await delete(client, "/todos/alice", {"todo_idx": 0})
    response = await client.delete(f"/todos/alice/{ids[2]}")
    assert response.status_code == 200 and response.json()["deleted"] == {
        **response.json()["deleted"],
        "id": ids[2],
        "todo": "c",
    }
    assert (await client.get("/todos/alice")).json()["todos"] == ["b"]


async def test_delete_out_of_range_index_returns_404_with_the_count(client: httpx.AsyncClient) -> None:
    await client.post("/todos/alice", json={"todo": "a"})
    for index in (1, -1, 2**63):
        response = await delete(client, "/todos/alice", {"todo_idx": index})
        assert response.status_code == 404
        assert response.json()["detail"] == f"todo_idx {index} is out of range: 'alice' has 1 todos"
    assert (await client.get("/todos/alice")).json()["todos"] == ["a"]


async def test_delete_for_an_unknown_user_returns_404(client: httpx.AsyncClient) -> None:
    response = await delete(client, "/todos/ghost", {"todo_idx": 0})
    assert response.status_code == 404 and response.json()["detail"] == "user 'ghost' has no todos"


async def test_delete_by_unknown_id_returns_404(client: httpx.AsyncClient) -> None:
    response = await client.delete("/todos/alice/12345")
    assert response.status_code == 404 and "no todo with id 12345" in response.json()["detail"]


@pytest.mark.parametrize("body", [{"todo_idx": "x"}, {"todo_idx": 1.5}, {"todo_idx": None}, {}, {"idx": 0}])
async def test_delete_with_a_missing_or_ill_typed_index_returns_422(client: httpx.AsyncClient, body: Any) -> None:
    response = await delete(client, "/todos/alice", body)
    assert response.status_code == 422 and response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"todo": ""}, "todo"), ({"todo": "x" * 1001}, "todo"), ({"todo": 5}, "todo"), ({}, "todo"), ([], None)],
)
async def test_add_with_an_empty_long_or_missing_todo_returns_422(
    client: httpx.AsyncClient, body: Any, field: str | None
) -> None:
    response = await client.post("/todos/alice", json=body)
    assert response.status_code == 422
    if field:
        assert response.json()["detail"][0]["loc"][-1] == field
    assert (await client.get("/todos/alice")).json()["todos"] == []


async def test_a_todo_of_exactly_1000_characters_is_accepted(client: httpx.AsyncClient) -> None:
    assert (await client.post("/todos/alice", json={"todo": "x" * 1000})).status_code == 200


async def test_malformed_json_returns_422_not_500(client: httpx.AsyncClient) -> None:
    response = await client.post("/todos/alice", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


async def test_unicode_usernames_and_todos_round_trip(client: httpx.AsyncClient) -> None:
    await client.post("/todos/zoë 東京", json={"todo": "café ☕ — ünïcödé"})
    assert (await client.get("/todos/zoë 東京")).json()["todos"] == ["café ☕ — ünïcödé"]


async def test_responses_are_application_json(client: httpx.AsyncClient) -> None:
    for response in (
        await client.post("/todos/alice", json={"todo": "a"}),
        await client.get("/todos/alice"),
        await delete(client, "/todos/alice", {"todo_idx": 0}),
    ):
        assert response.headers["content-type"] == "application/json"


async def test_the_generated_spec_is_valid_openapi_with_the_examples_operation_ids(spec: dict[str, Any]) -> None:
    validate(spec)
    operations = {
        op["operationId"]: (path, method) for path, item in spec["paths"].items() for method, op in item.items()
    }
    assert operations == {
        "addTodo": ("/todos/{username}", "post"),
        "getTodos": ("/todos/{username}", "get"),
        "deleteTodo": ("/todos/{username}", "delete"),
        "deleteTodoById": ("/todos/{username}/{todo_id}", "delete"),
    }
    assert spec["paths"]["/todos/{username}"]["get"]["x-openai-isConsequential"] is False
    assert spec["paths"]["/todos/{username}"]["post"]["x-openai-isConsequential"] is True


async def test_every_todo_response_validates_against_the_spec(client: httpx.AsyncClient, spec: dict[str, Any]) -> None:
    responses = [
        await client.post("/todos/alice", json={"todo": "a"}),
        await client.post("/todos/alice", json={"todo": ""}),
        await client.get("/todos/alice"),
        await client.get("/todos/nobody"),
        await delete(client, "/todos/alice", {"todo_idx": 5}),
        await delete(client, "/todos/alice", {"todo_idx": "x"}),
        await delete(client, "/todos/alice", {"todo_idx": 0}),
        await client.delete("/todos/alice/999"),
    ]
    assert {r.status_code for r in responses} == {200, 404, 422}
    for response in responses:
        assert_response_matches_spec(spec, response)


async def test_the_manifest_matches_the_example_and_its_api_url_resolves(client: httpx.AsyncClient) -> None:
    manifest = (await client.get("/.well-known/ai-plugin.json")).json()
    assert manifest["name_for_model"] == "todo"
    assert manifest["name_for_human"] == "TODO List (no auth)"
    assert manifest["auth"] == {"type": "none"}
    assert validate_manifest(manifest, "strict") == []
    api = await client.get(manifest["api"]["url"])
    assert api.status_code == 200 and api.text.startswith("openapi: 3.")
    assert (await client.get(manifest["logo_url"])).headers["content-type"] == "image/png"
    assert (await client.get(manifest["legal_info_url"])).status_code == 200
