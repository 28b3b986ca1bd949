"""The middlewares every plugin app runs, through a real plugin app in-process."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send

from plugkit.middleware import BodySizeLimit, Cors
from plugkit.plugins.retrieval.app import create_app as create_retrieval_app
from plugkit.plugins.retrieval.settings import RetrievalSettings
from plugkit.plugins.todo.app import create_app as create_todo_app
from plugkit.plugins.todo.settings import TodoSettings
from tests.helpers import PluginServer, asgi_client

BODY = b'{"todo": "buy milk"}'


@pytest.fixture(params=[True, False], ids=["fast-paths", "routes-only"])
async def todo(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The todo app with and without its fast paths: both must answer the same."""
    settings = TodoSettings(data_dir=tmp_path, fast_paths=request.param)
    async with asgi_client(create_todo_app(settings)) as client:
        yield client


@pytest.mark.parametrize("headers", [{}, {"content-type": "text/plain"}, {"content-type": "text/plain; charset=utf-8"}])
async def test_a_json_body_without_the_json_content_type_is_read_as_json(
    todo: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await todo.post("/todos/alice", content=BODY, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["todo"] == "buy milk"
    assert (await todo.get("/todos/alice")).json()["todos"] == ["buy milk"]


async def test_a_json_body_of_a_delete_without_content_type_is_read_as_json(todo: httpx.AsyncClient) -> None:
    await todo.post("/todos/alice", json={"todo": "a"})
    response = await todo.request("DELETE", "/todos/alice", content=b'{"todo_idx": 0}')
    assert response.status_code == 200, response.text
    assert (await todo.get("/todos/alice")).json()["todos"] == []


async def test_a_body_that_is_not_json_without_content_type_is_a_422_saying_so(todo: httpx.AsyncClient) -> None:
    response = await todo.post("/todos/alice", content=b"buy milk", headers={"content-type": "text/plain"})
    assert response.status_code == 422
    assert "JSON" in response.text


@pytest.mark.parametrize("headers", [{}, {"content-type": "text/plain"}])
async def test_a_browser_request_without_the_json_content_type_is_a_415_naming_the_header(
    todo: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """A cross-site page can send text/plain or no Content-Type without a preflight; it always sends Origin."""
    response = await todo.post("/todos/alice", content=BODY, headers={**headers, "origin": "https://evil.example"})
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["detail"]
    assert (await todo.get("/todos/alice")).json()["todos"] == []


async def test_a_browser_request_with_the_json_content_type_is_served(todo: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/json", "origin": "https://chatgpt.com"}
    assert (await todo.post("/todos/alice", content=BODY, headers=headers)).status_code == 200


async def test_a_multipart_upload_is_not_read_as_json(tmp_path: Path) -> None:
    async with asgi_client(create_retrieval_app(RetrievalSettings(data_dir=tmp_path))) as client:
        files = {"file": ("note.txt", b"The mitochondria is the powerhouse of the cell.", "text/plain")}
        response = await client.post("/upsert-file", files=files)
        assert response.status_code == 200, response.text
        assert len(response.json()["ids"]) == 1


def urllib_post(url: str, body: bytes, content_type: str) -> tuple[int, dict[str, str]]:
    """POST with Python's urllib, which sends the whole body before it reads the answer."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.slow
def test_urllib_reads_the_413_of_a_10_mb_json_body(tmp_path: Path) -> None:
    with PluginServer("todo", "--data-dir", str(tmp_path)) as server:
        body = json.dumps({"todo": "x" * 10_000_000}).encode()
        status, answer = urllib_post(f"{server.base_url}/todos/alice", body, "application/json")
        again, _ = urllib_post(f"{server.base_url}/todos/alice", b'{"todo": "small"}', "application/json")
    assert status == 413 and answer == {"detail": "request body is larger than the limit of 1000000 bytes"}
    assert again == 200


@pytest.mark.slow
def test_urllib_reads_the_413_of_a_101_mb_upload(tmp_path: Path) -> None:
    boundary = "plugkit-test-boundary"
    body = b"".join(
        [
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n'.encode(),
            b"Content-Type: text/plain\r\n\r\n",
            b"a" * (101 * 1024 * 1024),
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    with PluginServer("retrieval", "--data-dir", str(tmp_path)) as server:
        status, answer = urllib_post(
            f"{server.base_url}/upsert-file", body, f"multipart/form-data; boundary={boundary}"
        )
    assert status == 413 and "request body is larger than the limit" in answer["detail"]


RESPONSE_HEADERS = [
    [],
    [(b"content-type", b"application/json")],
    [(b"vary", b"Accept-Encoding"), (b"content-type", b"text/plain")],
    [(b"vary", b"Accept"), (b"x-a", b"1"), (b"vary", b"Cookie"), (b"x-b", b"2")],
]


@pytest.mark.parametrize("response_headers", RESPONSE_HEADERS)
@pytest.mark.parametrize("request_headers", [[], [(b"origin", b"https://chatgpt.com")], [(b"origin", b"https://x.io")]])
async def test_cors_answers_with_the_same_headers_as_starlettes_cors_middleware(
    response_headers: list[tuple[bytes, bytes]], request_headers: list[tuple[bytes, bytes]]
) -> None:
    """The shorter path for requests without Origin changes nothing that Starlette's middleware would send."""

    async def inner(_scope: Scope, _receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(response_headers)})
        await send({"type": "http.response.body", "body": b"ok"})

    options: dict[str, Any] = {
        "allow_origins": ["https://chatgpt.com"],
        "allow_methods": ["*"],
        "allow_headers": ["*"],
        "allow_credentials": True,
    }
    answers = []
    for middleware in (Cors(inner, **options), CORSMiddleware(inner, **options)):
        sent: list[Message] = []

        async def send(message: Message, sent: list[Message] = sent) -> None:
            sent.append(message)

        async def receive() -> Message:
            return {"type": "http.request", "body": b""}

        scope = {"type": "http", "method": "GET", "path": "/", "headers": list(request_headers)}
        await middleware(scope, receive, send)
        answers.append(sent)
    assert answers[0] == answers[1]
    assert any(name == b"vary" and value.endswith(b"Origin") for name, value in answers[0][0]["headers"])


@pytest.mark.parametrize(
    ("http_version", "headers"),
    [("2", []), ("1.1", [(b"transfer-encoding", b"chunked")]), ("1.1", [(b"content-length", b"x")])],
)
async def test_a_body_not_framed_by_a_declared_length_is_counted_and_refused_past_the_limit(
    http_version: str, headers: list[tuple[bytes, bytes]]
) -> None:
    """Only an HTTP/1 body of a declared length within the limit goes uncounted: the server reads no more than that."""
    parts = [b"x" * 600, b"x" * 600, b""]
    sent: list[Message] = []

    async def app(_scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read"})

    async def receive() -> Message:
        body = parts.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(parts)}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "http_version": http_version, "method": "POST", "path": "/", "headers": headers}
    await BodySizeLimit(app, default=1000)(scope, receive, send)
    assert sent[0]["status"] == 413
