"""Fast paths are derived from the routes: they answer what validates exactly as FastAPI would, hand everything else to
FastAPI intact, and answer errors with the app's own handlers."""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from plugkit.cli.registry import load
from plugkit.docs import FULL_SPEC_PATH
from plugkit.errors import INTERNAL_ERROR
from plugkit.fastpath import FastPaths, derive, derive_all, is_json
from tests.helpers import CountingApp


class Item(BaseModel):
    name: str = Field(min_length=1, max_length=20)
    size: int = Field(default=1, ge=1, le=10)


class Stored(BaseModel):
    owner: str
    item: Item
    tags: list[str]


class Filter(BaseModel):
    """A query parameter model: FastAPI reads its fields from the query string."""

    limit: int = Field(default=5, ge=1, le=10)
    tag: str | None = None


class Refused(Exception):
    """An error with a handler of its own in the app."""


calls: list[str] = []


async def owner_of(request: Request, owner: str) -> str:
    calls.append(f"owner_of {owner}")
    if owner == "forbidden":
        raise HTTPException(403, "not this one", headers={"X-Reason": "test"})
    if owner == "refused":
        raise Refused("refused by a dependency")
    if owner == "broken":
        raise RuntimeError("the dependency failed")
    return owner.upper() if request.scope["route"].path == "/items/{owner}" else owner


async def counted() -> int:
    calls.append("counted")
    return len(calls)


stamps = itertools.count(1)  # a default factory's values (reset by the tests that count them)


def sync_dependency() -> str:
    return "sync"


def build() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{owner}", response_model=Stored)
    async def get_item(
        owner: Annotated[str, Depends(owner_of)],
        first: Annotated[int, Depends(counted)],
        again: Annotated[int, Depends(counted)],  # cached: the same value, one call
        size: Annotated[int, Query(ge=1, le=10)] = 1,
        tags: Annotated[list[str] | None, Query()] = None,
    ) -> Stored:
        assert first == again
        return Stored(owner=owner, item=Item(name="thing", size=size), tags=tags or [])

    @app.post("/items/{owner}", response_model=Stored, status_code=201)
    async def post_item(owner: Annotated[str, Depends(owner_of)], item: Item) -> Stored:
        return Stored(owner=owner, item=item, tags=[])

    @app.get("/filtered")
    async def filtered(query: Annotated[Filter, Query()]) -> dict[str, Any]:
        return query.model_dump()

    @app.get("/plain/{name}")
    async def plain(name: str) -> dict[str, Any]:
        return {"name": name}

    @app.get("/headers")
    async def with_header(x_token: Annotated[str, Header()]) -> dict[str, str]:
        return {"token": x_token}

    @app.get("/sync")
    async def with_sync(value: Annotated[str, Depends(sync_dependency)]) -> dict[str, str]:
        return {"value": value}

    @app.get("/stamped")
    async def stamped(
        stamp: Annotated[int, Query(default_factory=lambda: next(stamps))], page: int = 1
    ) -> dict[str, int]:
        return {"stamp": stamp, "page": page}

    @app.exception_handler(Refused)
    async def refused(_request: Request, exc: Refused) -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse({"detail": str(exc)}, status_code=409)

    return app


def routes(app: FastAPI) -> list[APIRoute]:
    return [r for r in app.routes if isinstance(r, APIRoute) and not r.path.startswith(("/docs", "/openapi", "/redoc"))]


@pytest.fixture
async def setup() -> AsyncIterator[tuple[httpx.AsyncClient, CountingApp]]:
    app = build()
    counting = CountingApp(app)
    fast = FastPaths(
        counting, derive_all(routes(app)), handlers=app.exception_handlers, overrides=app.dependency_overrides
    )
    transport = httpx.ASGITransport(app=fast, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client, counting


REQUESTS: list[tuple[str, str, dict[str, str], bytes]] = [
    ("GET", "/items/ann", {}, b""),
    ("GET", "/items/ann?size=3&tags=a&tags=b", {}, b""),
    ("GET", "/items/ann?size=0", {}, b""),
    ("GET", "/items/ann?size=x", {}, b""),
    ("GET", "/items/ann?unknown=1", {}, b""),
    ("GET", "/items/a%20b", {}, b""),
    ("GET", "/items/forbidden", {}, b""),
    ("GET", "/items/refused", {}, b""),
    ("POST", "/items/ann", {"content-type": "application/json"}, b'{"name": "cup", "size": 2}'),
    ("POST", "/items/ann", {"content-type": "application/json"}, b'{"name": "", "size": 2}'),
    ("POST", "/items/ann", {"content-type": "application/json"}, b'{"name": "cup", "size": "2"}'),
    ("POST", "/items/ann", {"content-type": "application/json"}, b'{"name": "cup"'),
    ("POST", "/items/ann", {"content-type": "application/json"}, b""),
    ("POST", "/items/ann", {"content-type": "text/plain"}, b'{"name": "cup"}'),
    ("POST", "/items/ann", {"content-type": "application/json"}, b'["cup"]'),
    ("POST", "/items/ann", {"content-type": "application/json"}, b"[" * 5000 + b"]" * 5000),
    ("POST", "/items/ann", {"content-type": "application/json"}, b'{"name": "\xff"}'),
    ("PUT", "/items/ann", {}, b""),
    ("GET", "/items/ann/more", {}, b""),
    ("GET", "/plain/x", {}, b""),
    ("GET", "/filtered?limit=3&tag=x", {}, b""),
    ("GET", "/filtered?limit=0", {}, b""),
    ("GET", "/headers", {"x-token": "t"}, b""),
    ("GET", "/sync", {}, b""),
    ("GET", "/stamped", {}, b""),
    ("GET", "/stamped?page=2", {}, b""),
    ("GET", "/stamped?stamp=7&page=x", {}, b""),
]


async def test_every_request_is_answered_as_fastapi_alone_answers_it() -> None:
    global stamps
    answers = []
    for with_fast in (True, False):
        stamps = itertools.count(1)
        app = build()
        asgi: Any = app
        if with_fast:
            asgi = FastPaths(app, derive_all(routes(app)), handlers=app.exception_handlers)
        transport = httpx.ASGITransport(app=asgi, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            answers.append(
                [
                    (r.status_code, r.headers.get("content-type"), r.headers.get("x-reason"), r.content)
                    for r in [await client.request(m, u, headers=h, content=b) for m, u, h, b in REQUESTS]
                ]
            )
    for request, fast, plain in zip(REQUESTS, answers[0], answers[1], strict=True):
        assert fast == plain, request
    assert answers[0][0][0] == 200 and answers[0][8][0] == 201  # the cases reach the endpoints


async def test_requests_that_validate_never_reach_fastapi(setup: tuple[httpx.AsyncClient, CountingApp]) -> None:
    client, counting = setup
    answer = await client.get("/items/ann?size=3&tags=a&tags=b")
    assert answer.json() == {"owner": "ANN", "item": {"name": "thing", "size": 3}, "tags": ["a", "b"]}
    assert answer.headers["content-type"] == "application/json"
    assert int(answer.headers["content-length"]) == len(answer.content)
    posted = await client.post("/items/ann", json={"name": "cup", "size": 2})
    assert posted.status_code == 201 and posted.json()["item"] == {"name": "cup", "size": 2}
    assert (await client.get("/plain/x")).json() == {"name": "x"}
    assert (await client.get("/filtered?limit=3")).json() == {"limit": 3, "tag": None}  # a parameter model
    assert counting.calls == 0


async def test_a_default_factory_is_drawn_on_every_request_with_or_without_a_query_string(
    setup: tuple[httpx.AsyncClient, CountingApp],
) -> None:
    global stamps
    stamps = itertools.count(1)
    client, counting = setup
    answers = [
        (await client.get(url)).json() for url in ("/stamped", "/stamped", "/stamped?page=3", "/stamped?stamp=9")
    ]
    assert answers == [
        {"stamp": 1, "page": 1},
        {"stamp": 2, "page": 1},
        {"stamp": 3, "page": 3},
        {"stamp": 9, "page": 1},
    ]
    assert counting.calls == 0


async def test_a_cached_dependency_runs_once_per_request(setup: tuple[httpx.AsyncClient, CountingApp]) -> None:
    client, _counting = setup
    calls.clear()
    assert (await client.get("/items/ann")).status_code == 200
    assert calls == ["owner_of ann", "counted"]


async def test_requests_with_errors_reach_fastapi_with_their_body_intact(
    setup: tuple[httpx.AsyncClient, CountingApp],
) -> None:
    client, counting = setup
    answer = await client.post("/items/ann", json={"name": ""})
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "name"]
    assert (await client.get("/items/ann?size=0")).status_code == 422
    assert (await client.put("/items/ann")).status_code == 405
    assert counting.calls == 3


async def test_a_body_sent_in_chunks_is_read_whole(setup: tuple[httpx.AsyncClient, CountingApp]) -> None:
    client, counting = setup

    async def chunks() -> AsyncIterator[bytes]:
        for part in (b'{"name"', b': "cup"', b"}"):
            yield part

    answer = await client.post("/items/ann", content=chunks(), headers={"content-type": "application/json"})
    assert answer.json()["item"] == {"name": "cup", "size": 1}
    assert counting.calls == 0


def test_routes_declaring_what_a_fast_path_does_not_reproduce_have_none() -> None:
    app = build()
    derived = {r.path: bool(derive(r)) for r in routes(app)}
    assert derived == {
        "/items/{owner}": True,
        "/filtered": True,
        "/plain/{name}": True,
        "/headers": False,
        "/sync": False,
        "/stamped": True,
    }


async def test_errors_raised_on_the_fast_path_are_answered_by_the_apps_handlers(
    setup: tuple[httpx.AsyncClient, CountingApp],
) -> None:
    client, counting = setup
    forbidden = await client.get("/items/forbidden")
    assert forbidden.status_code == 403 and forbidden.json() == {"detail": "not this one"}
    assert forbidden.headers["x-reason"] == "test"
    refused = await client.get("/items/refused")
    assert refused.status_code == 409 and refused.json() == {"detail": "refused by a dependency"}
    assert counting.calls == 0


async def test_an_unexpected_error_on_the_fast_path_is_a_logged_json_500(
    setup: tuple[httpx.AsyncClient, CountingApp], caplog: pytest.LogCaptureFixture
) -> None:
    client, _counting = setup
    with caplog.at_level(logging.ERROR, logger="plugkit"):
        answer = await client.get("/items/broken")
    assert answer.status_code == 500
    assert answer.json() == {"detail": INTERNAL_ERROR}
    assert "RuntimeError" in caplog.text and "/items/broken" in caplog.text


async def test_dependency_overrides_send_every_request_through_fastapi() -> None:
    app = build()

    async def override() -> str:
        return "overridden"

    app.dependency_overrides[owner_of] = override
    counting = CountingApp(app)
    fast = FastPaths(
        counting, derive_all(routes(app)), handlers=app.exception_handlers, overrides=app.dependency_overrides
    )
    transport = httpx.ASGITransport(app=fast, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/items/ann")).json()["owner"] == "overridden"
    assert counting.calls == 1


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/problem+json", False),
        ("text/plain", False),
        (None, False),
    ],
)
def test_only_plain_application_json_counts_as_json(content_type: str | None, expected: bool) -> None:
    assert is_json(content_type) is expected


@pytest.mark.parametrize("name", ["todo", "sports", "retrieval"])
async def test_every_operation_of_the_reference_plugins_takes_a_fast_path_but_file_uploads(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLUGKIT_DATA_DIR", str(tmp_path))
    app = load(name).create_app()
    layer: Any = app.build_middleware_stack()
    while not isinstance(layer, FastPaths):
        layer = layer.app
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        spec = (await client.get(FULL_SPEC_PATH)).json()
    operations = [
        (method.upper(), re.sub(r"\{[^}]+\}", "x", path), operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    ]
    assert operations
    for method, path, operation in operations:
        upload = "multipart/form-data" in operation.get("requestBody", {}).get("content", {})
        fast = any(f.method == method and f.path.fullmatch(path) for f in layer.paths)
        assert fast is not upload, (method, path)
