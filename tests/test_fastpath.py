"""Fast paths answer what they take, hand everything else to the app intact, and answer errors as the app would."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request

from plugkit.fastpath import INTERNAL_ERROR, FastPath, FastPaths, is_json
from tests.helpers import CountingApp

PATH = re.compile(r"/items/(?P<name>[a-z]+)")


async def fast_get(request: Request, match: re.Match[str], _body: bytes) -> bytes | None:
    if match["name"] == "forbidden":
        raise HTTPException(403, "not this one", headers={"X-Reason": "test"})
    if match["name"] == "broken":
        raise RuntimeError("the handler failed")
    if request.scope["query_string"]:
        return None
    return b'{"fast": "%s"}' % match["name"].encode()


async def fast_post(_request: Request, _match: re.Match[str], body: bytes) -> bytes | None:
    return b'{"fast": true}' if body == b'{"take": true}' else None


def build() -> tuple[FastPaths, CountingApp]:
    app = FastAPI()

    @app.get("/items/{name}")
    async def get_item(name: str) -> dict[str, str]:
        return {"route": name}

    @app.post("/items/{name}")
    async def post_item(name: str, request: Request) -> dict[str, str]:
        return {"route": name, "body": (await request.body()).decode()}

    paths = [FastPath("GET", PATH, fast_get), FastPath("POST", PATH, fast_post, reads_body=True)]
    counting = CountingApp(app)
    return FastPaths(counting, paths), counting


@pytest.fixture
async def setup() -> AsyncIterator[tuple[httpx.AsyncClient, CountingApp]]:
    fast, counting = build()
    transport = httpx.ASGITransport(app=fast, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client, counting


async def test_a_request_the_fast_path_takes_never_reaches_the_app(
    setup: tuple[httpx.AsyncClient, CountingApp],
) -> None:
    client, counting = setup
    answer = await client.get("/items/apple")
    assert answer.status_code == 200 and answer.json() == {"fast": "apple"}
    assert answer.headers["content-type"] == "application/json"
    assert int(answer.headers["content-length"]) == len(answer.content)
    assert counting.calls == 0


async def test_a_declined_request_reaches_the_route(setup: tuple[httpx.AsyncClient, CountingApp]) -> None:
    client, counting = setup
    answer = await client.get("/items/apple?x=1")
    assert answer.json() == {"route": "apple"}
    assert counting.calls == 1


async def test_a_declined_request_reaches_the_route_with_its_body_intact(
    setup: tuple[httpx.AsyncClient, CountingApp],
) -> None:
    client, counting = setup
    taken = await client.post("/items/pear", content=b'{"take": true}')
    declined = await client.post("/items/pear", content=b'{"take": false}')
    assert taken.json() == {"fast": True}
    assert declined.json() == {"route": "pear", "body": '{"take": false}'}
    assert counting.calls == 1


async def test_a_body_sent_in_chunks_is_read_whole(setup: tuple[httpx.AsyncClient, CountingApp]) -> None:
    client, counting = setup

    async def chunks() -> AsyncIterator[bytes]:
        for part in (b'{"take"', b": ", b"true}"):
            yield part

    answer = await client.post("/items/pear", content=chunks())
    assert answer.json() == {"fast": True}
    assert counting.calls == 0


async def test_other_methods_and_paths_go_to_the_app(setup: tuple[httpx.AsyncClient, CountingApp]) -> None:
    client, counting = setup
    assert (await client.get("/items/Apple")).json() == {"route": "Apple"}  # the pattern takes lower case only
    assert (await client.delete("/items/apple")).status_code == 405
    assert (await client.get("/items/apple/more")).status_code == 404  # the pattern must match the whole path
    assert counting.calls == 3


async def test_an_http_error_from_a_fast_handler_is_answered_as_json_with_its_headers(
    setup: tuple[httpx.AsyncClient, CountingApp],
) -> None:
    client, counting = setup
    answer = await client.get("/items/forbidden")
    assert answer.status_code == 403
    assert answer.json() == {"detail": "not this one"}
    assert answer.headers["x-reason"] == "test"
    assert counting.calls == 0


async def test_an_unexpected_error_in_a_fast_handler_is_a_logged_json_500(
    setup: tuple[httpx.AsyncClient, CountingApp], caplog: pytest.LogCaptureFixture
) -> None:
    client, _counting = setup
    with caplog.at_level(logging.ERROR, logger="plugkit"):
        answer = await client.get("/items/broken")
    assert answer.status_code == 500
    assert answer.json() == {"detail": INTERNAL_ERROR}
    assert "RuntimeError" in caplog.text and "/items/broken" in caplog.text


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
