from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from openapi_spec_validator import validate

from plugkit.fastpath import FastPaths
from plugkit.manifest import validate_manifest
from plugkit.observe import flatten
from plugkit.plugins.todo.app import create_app
from plugkit.plugins.todo.settings import TodoSettings
from tests.helpers import CountingApp, asgi_client, assert_response_matches_spec


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
    assert (await client.get("/todos/nobody")).json() == {"todos": [], "items": [], "total": 0, "next_offset": None}


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


async def test_a_todo_with_a_nul_character_returns_422_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.post("/todos/alice", json={"todo": "a\x00b"})
    assert response.status_code == 422
    assert "NUL" in response.json()["detail"][0]["msg"]
    assert (await client.get("/todos/alice")).json()["todos"] == []


@pytest.mark.parametrize("username", ["a%00b", "a%0D%0ASet-Cookie:%20x=1", "tab%09bed"])
async def test_a_username_with_control_characters_returns_422_naming_it(
    client: httpx.AsyncClient, username: str
) -> None:
    response = await client.get(f"/todos/{username}")
    assert response.status_code == 422
    assert "username" in response.json()["detail"][0]["msg"]
    assert "set-cookie" not in response.headers


async def test_nul_characters_are_refused_on_postgresql_too_not_answered_with_500(postgres_url: str) -> None:
    async with asgi_client(create_app(TodoSettings(database_url=postgres_url))) as client:
        assert (await client.post("/todos/alice", json={"todo": "a\x00b"})).status_code == 422
        assert (await client.post("/todos/a%00b", json={"todo": "fine"})).status_code == 422
        assert (await client.post("/todos/alice", json={"todo": "fine"})).status_code == 200


async def test_a_long_list_comes_in_pages_under_the_response_limit(client: httpx.AsyncClient) -> None:
    for i in range(120):
        assert (await client.post("/todos/alice", json={"todo": f"{i:04d}" + "x" * 996})).status_code == 200
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        response = await client.get("/todos/alice", params={"offset": offset})
        assert response.status_code == 200 and len(response.text) < 100_000
        page = response.json()
        assert page["total"] == 120 and page["todos"]
        seen += page["todos"]
        offset = page["next_offset"]
    assert [t[:4] for t in seen] == [f"{i:04d}" for i in range(120)]


async def test_limit_and_offset_select_a_page(client: httpx.AsyncClient) -> None:
    for text in ("a", "b", "c", "d"):
        await client.post("/todos/alice", json={"todo": text})
    page = (await client.get("/todos/alice", params={"offset": 1, "limit": 2})).json()
    assert (page["todos"], page["total"], page["next_offset"]) == (["b", "c"], 4, 3)
    last = (await client.get("/todos/alice", params={"offset": 3, "limit": 2})).json()
    assert (last["todos"], last["total"], last["next_offset"]) == (["d"], 4, None)
    beyond = (await client.get("/todos/alice", params={"offset": 10})).json()
    assert (beyond["todos"], beyond["total"], beyond["next_offset"]) == ([], 4, None)


# The fast paths (plain GET of a list, well-formed POST) answer exactly as the routes do.
FAST_PATH_CASES: list[tuple[str, str, dict[str, str], bytes]] = [
    ("POST", "/todos/alice", {"content-type": "application/json"}, b'{"todo": "buy milk"}'),
    ("POST", "/todos/alice", {"content-type": "application/json; charset=utf-8"}, '{"todo": "café ☕"}'.encode()),
    ("POST", "/todos/ali%20ce", {"content-type": "application/json"}, b'{"todo": "spaced name"}'),
    ("POST", "/todos/alice", {"content-type": "text/plain"}, b'{"todo": "wrong type"}'),
    ("POST", "/todos/alice", {}, b'{"todo": "no type"}'),
    ("POST", "/todos/alice", {"origin": "https://evil.example"}, b'{"todo": "cross-site, no type"}'),
    ("POST", "/todos/alice", {"content-type": "application/json"}, b'{"todo": ""}'),
    ("POST", "/todos/alice", {"content-type": "application/json"}, b'{"todo": 5}'),
    ("POST", "/todos/alice", {"content-type": "application/json"}, b'{"todo": "x", "extra": 1}'),
    ("POST", "/todos/alice", {"content-type": "application/json"}, b'{"todo": "nul \\u0000"}'),
    ("POST", "/todos/alice", {"content-type": "application/json"}, b'{"todo": "lone \\ud800"}'),
    ("POST", "/todos/alice", {"content-type": "application/json"}, b'{"todo": "' + b"x" * 1001 + b'"}'),
    ("POST", "/todos/alice", {"content-type": "application/json"}, b'{"todo": "broken'),
    ("POST", "/todos/alice", {"content-type": "application/json"}, b"\xff\xfe"),
    ("POST", "/todos/alice", {"content-type": "application/json"}, b'["buy milk"]'),
    ("POST", "/todos/bad%0Aname", {"content-type": "application/json"}, b'{"todo": "x"}'),
    ("POST", "/todos/" + "n" * 201, {"content-type": "application/json"}, b'{"todo": "x"}'),
    ("GET", "/todos/alice", {}, b""),
    ("GET", "/todos/ali%20ce", {}, b""),
    ("GET", "/todos/nobody", {}, b""),
    ("GET", "/todos/alice?offset=1&limit=1", {}, b""),
    ("GET", "/todos/alice?limit=0", {}, b""),
    ("GET", "/todos/alice?unknown=1", {}, b""),
    ("GET", "/todos/bad%7Fname", {}, b""),
    ("GET", "/todos/" + "n" * 201, {}, b""),
    ("GET", "/todos/alice/1", {}, b""),
    ("POST", "/todos/alice/1", {"content-type": "application/json"}, b'{"todo": "deeper"}'),
    ("GET", "/todos/alice/", {}, b""),
    ("DELETE", "/todos/alice", {"content-type": "application/json"}, b'{"todo_idx": 99}'),
    ("DELETE", "/todos/alice", {"content-type": "application/json"}, b'{"todo_idx": -1}'),
    ("DELETE", "/todos/alice/999", {}, b""),
    ("DELETE", "/todos/alice/abc", {}, b""),
    ("DELETE", "/todos/alice", {"content-type": "application/json"}, b'{"todo_idx": 0}'),
    ("GET", "/todos/alice?limit=2", {}, b""),
]


def comparable(answer: httpx.Response) -> tuple[int, str, Any]:
    """Status, content type and body, with creation times (which differ between two runs) blanked."""
    if "json" not in answer.headers.get("content-type", ""):
        return answer.status_code, answer.headers.get("content-type", ""), answer.text
    body = answer.json()
    items = [*body.get("items", []), body.get("deleted") or {}] if isinstance(body, dict) else []
    for item in items:
        item["created_at"] = "T"
    if isinstance(body, dict) and "created_at" in body:
        body["created_at"] = "T"
    return answer.status_code, answer.headers.get("content-type", ""), body


async def test_the_fast_paths_answer_every_request_as_the_routes_do(tmp_path: Path) -> None:
    answers: dict[bool, list[tuple[int, str, Any]]] = {}
    for fast in (True, False):
        settings = TodoSettings(data_dir=tmp_path / str(fast), fast_paths=fast)
        async with asgi_client(create_app(settings)) as client:
            answers[fast] = [
                comparable(await client.request(method, url, headers=headers, content=body))
                for method, url, headers, body in FAST_PATH_CASES
            ]
    for case, with_fast, without in zip(FAST_PATH_CASES, answers[True], answers[False], strict=True):
        assert with_fast == without, case
    listed = next(
        a for case, a in zip(FAST_PATH_CASES, answers[True], strict=True) if case[:2] == ("GET", "/todos/alice")
    )
    assert listed[2]["todos"] == ["buy milk", "café ☕", "wrong type", "no type"]  # the list the cases built


async def test_requests_that_validate_are_answered_without_reaching_fastapi_and_errors_come_from_the_routes(
    tmp_path: Path,
) -> None:
    app = create_app(TodoSettings(data_dir=tmp_path))
    async with asgi_client(app) as client:
        assert (await client.get("/todos/warm-up")).status_code == 200  # builds the middleware stack
        layer = app.middleware_stack
        while not isinstance(layer, FastPaths):
            layer = layer.app  # type: ignore[union-attr]
        behind = CountingApp(layer.app)
        layer.app = behind
        assert (await client.post("/todos/alice", json={"todo": "fast"})).status_code == 200
        assert (await client.get("/todos/alice")).json()["todos"] == ["fast"]
        assert (await client.get("/todos/alice?limit=1")).json()["todos"] == ["fast"]
        assert (await client.delete("/todos/alice/999")).status_code == 404  # the endpoint's own HTTPException
        assert behind.calls == 0
        assert (await client.post("/todos/alice", json={"todo": ""})).status_code == 422
        assert (await client.get("/todos/alice?limit=0")).status_code == 422
        assert (await client.put("/todos/alice")).status_code == 405
        assert behind.calls == 3


@pytest.mark.parametrize(
    ("kind", "shared_name_offered"),
    [("none", True), ("service_http", True), ("user_http", False), ("oauth", False)],
)
async def test_the_spec_offers_the_shared_global_list_only_where_any_name_is_reachable(
    tmp_path: Path, kind: str, shared_name_offered: bool
) -> None:
    """Under per-user auth a request for "global" is a 403, so the spec must not tell the model to use it."""
    extra = {"service_token": "svc_9Qm2vT7xLp4Rk8Zs1Wd6Yh3Nc5Bf0Ja"} if kind == "service_http" else {}
    app = create_app(TodoSettings(auth=kind, data_dir=tmp_path, **extra))  # type: ignore[arg-type]
    async with asgi_client(app) as client:
        description = (await client.get("/openapi.json")).json()["info"]["description"]
    assert ('"global"' in description) is shared_name_offered
    if not shared_name_offered:
        assert "signed in as" in description


async def test_a_kept_page_is_the_bytes_fastapi_serialises_from_the_response_model_and_follows_every_write(
    tmp_path: Path,
) -> None:
    """The list's page is rendered once per change of the database: the same bytes as the route's response model
    gives, and a write is in the next read."""
    app = create_app(TodoSettings(data_dir=tmp_path))
    (route,) = [r for r in flatten(app.routes) if isinstance(r, APIRoute) and r.operation_id == "getTodos"]
    async with asgi_client(app) as client:
        await client.post("/todos/ada", json={"todo": "one"})
        for expected in (["one"], ["one"], ["one", "two"]):
            if expected == ["one", "two"]:
                await client.post("/todos/ada", json={"todo": "two"})
            answer = await client.get("/todos/ada")
            assert answer.json()["todos"] == expected
            model, errors = route.response_field.validate(answer.json(), {}, loc=("response",))
            assert errors == []
            assert answer.content == route.response_field.serialize_json(model)
            assert answer.headers["content-type"] == "application/json"
