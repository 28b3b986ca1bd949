from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from openapi_spec_validator import validate
from pydantic import BaseModel
from starlette.types import Message, Receive, Scope, Send

from plugkit.app import PluginInfo, create_plugin_app
from plugkit.auth.none import NoAuthMethod
from plugkit.manifest import Api, Manifest, validate_manifest
from plugkit.middleware import RequestTimeout
from plugkit.settings import PluginSettings
from plugkit.storage import Database
from tests.helpers import asgi_client

router = APIRouter()


class Echo(BaseModel):
    text: str


@router.post("/echo", operation_id="echo", summary="Echo the text back")
async def echo(body: Echo) -> Echo:
    """Echo the text back."""
    return body


@router.get("/big", operation_id="big", summary="A large answer")
async def big(size: int) -> dict[str, str]:
    """Return `size` characters."""
    return {"text": "é" * size}


@router.get("/boom", operation_id="boom", summary="Fail")
async def boom() -> None:
    """Raise an unexpected error."""
    raise RuntimeError("secret internals /etc/passwd")


@router.get("/slow", operation_id="slow", summary="Answer after a while")
async def slow(seconds: float) -> dict[str, bool]:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return {"done": True}


@router.get("/long", operation_id="long", summary="x" * 301)
async def long_summary() -> None:
    """A summary the model host would reject."""


def sample_app(**settings: object) -> FastAPI:
    info = PluginInfo(
        manifest=Manifest(
            name_for_human="Sample",
            name_for_model="sample",
            description_for_human="A sample plugin.",
            description_for_model="A sample plugin.",
            api=Api(url="PLUGIN_HOSTNAME/openapi.yaml"),
            logo_url="PLUGIN_HOSTNAME/logo.png",
            contact_email="legal@plugkit.dev",
            legal_info_url="PLUGIN_HOSTNAME/legal",
        ),
        title="Sample",
        body_limits={"/echo": 2_000},
    )
    database = Database(f"sqlite:///{tempfile.mkdtemp(prefix='plugkit-sample-')}/sample.db")
    return create_plugin_app(
        info,
        [router],
        PluginSettings(**settings),  # type: ignore[arg-type]
        NoAuthMethod(),
        database=database,
        on_shutdown=[database.dispose],
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(sample_app(), base_url="http://plugin.test:8000") as c:
        yield c


async def test_manifest_is_served_with_the_request_host_substituted(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/ai-plugin.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    manifest = response.json()
    assert manifest["api"]["url"] == "http://plugin.test:8000/openapi.yaml"
    assert manifest["auth"] == {"type": "none"}
    assert validate_manifest(manifest) == []


async def test_a_configured_public_url_wins_over_the_request_host() -> None:
    async with asgi_client(sample_app(public_url="https://plugin.example.org/")) as c:
        assert (await c.get("/.well-known/ai-plugin.json")).json()["logo_url"] == "https://plugin.example.org/logo.png"
        assert (await c.get("/openapi.json")).json()["servers"] == [{"url": "https://plugin.example.org"}]


async def test_forwarded_headers_are_ignored_unless_trusted() -> None:
    headers = {"x-forwarded-proto": "https", "x-forwarded-host": "public.example.org"}
    async with asgi_client(sample_app(), base_url="http://internal:9000") as c:
        spec = (await c.get("/openapi.json", headers=headers)).json()
        assert spec["servers"] == [{"url": "http://internal:9000"}]
    async with asgi_client(sample_app(trust_proxy_headers=True), base_url="http://internal:9000") as c:
        spec = (await c.get("/openapi.json", headers=headers)).json()
        assert spec["servers"] == [{"url": "https://public.example.org"}]


async def test_openapi_yaml_and_json_are_the_same_valid_document(client: httpx.AsyncClient) -> None:
    import yaml

    as_yaml = await client.get("/openapi.yaml")
    as_json = await client.get("/openapi.json")
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.text) == as_json.json()
    validate(as_json.json())
    assert {op["operationId"] for p in as_json.json()["paths"].values() for op in p.values()} == {
        "echo",
        "big",
        "boom",
        "slow",
        "long",
    }


async def test_logo_legal_and_docs_pages_are_served(client: httpx.AsyncClient) -> None:
    logo = await client.get("/logo.png")
    assert logo.headers["content-type"] == "image/png" and logo.content.startswith(b"\x89PNG")
    legal = await client.get("/legal")
    assert legal.status_code == 200 and "Sample" in legal.text and "legal@plugkit.dev" in legal.text
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "/openapi.full.json" in docs.text


async def test_cors_preflight_from_chatgpt_allows_private_network_access(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/echo",
        headers={
            "Origin": "https://chatgpt.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
            "Access-Control-Request-Private-Network": "true",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://chatgpt.com"
    assert response.headers["access-control-allow-private-network"] == "true"


@pytest.mark.parametrize("origin", ["https://chat.openai.com", "http://localhost:3000", "http://127.0.0.1:5173"])
async def test_cors_allows_the_hosts_and_localhost(client: httpx.AsyncClient, origin: str) -> None:
    response = await client.get("/.well-known/ai-plugin.json", headers={"Origin": origin})
    assert response.headers["access-control-allow-origin"] == origin


async def test_cors_refuses_other_origins(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/ai-plugin.json", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_a_response_over_100000_characters_is_refused_with_a_clear_400(client: httpx.AsyncClient) -> None:
    ok = await client.get("/big", params={"size": 99_000})
    assert ok.status_code == 200 and len(ok.text) < 100_000 < len(ok.content)
    refused = await client.get("/big", params={"size": 100_000})
    assert refused.status_code == 400
    assert "over the limit of 100000" in refused.json()["detail"]


async def test_a_body_over_the_route_limit_gets_413_naming_the_limit(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", json={"text": "x" * 3_000})
    assert response.status_code == 413
    assert response.json() == {"detail": "request body is larger than the limit of 2000 bytes"}


async def test_a_streamed_body_over_the_limit_gets_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 500

    response = await client.post("/echo", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


async def test_an_unexpected_error_is_a_json_500_without_internals(client: httpx.AsyncClient) -> None:
    response = await client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert "passwd" not in response.text and "Traceback" not in response.text


async def test_validation_errors_are_json_422_naming_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", json={"txt": "hello"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "text"]


async def test_unknown_paths_are_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404 and response.json() == {"detail": "Not Found"}


async def test_descriptions_over_the_host_limits_are_logged_at_startup(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="plugkit"):
        async with asgi_client(sample_app()):
            pass
    assert any("paths./long.get.summary: is 301 characters" in r.getMessage() for r in caplog.records)


async def test_json_nested_too_deeply_to_parse_is_refused_with_a_400_that_says_so(client: httpx.AsyncClient) -> None:
    nested = b"[" * 999 + b"]" * 999  # under the 2,000-byte limit of /echo, deeper than the parser goes
    response = await client.post("/echo", content=nested, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"detail": "the JSON body is nested too deeply to parse"}


async def test_a_body_that_is_not_utf8_is_refused_with_a_400_naming_the_byte(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", content=b'{"text": "\xff"}', headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"detail": "the body is not valid UTF-8: byte 0xff at position 10"}


async def test_invalid_json_is_refused_with_the_parser_s_reason(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"].startswith("the body is not valid JSON: Expecting property name")


async def test_requests_past_the_per_address_limit_get_429_with_retry_after() -> None:
    async with asgi_client(sample_app(rate_limit_per_minute=3, rate_limit_exempt=[])) as c:
        statuses = [(await c.get("/.well-known/ai-plugin.json")).status_code for _ in range(4)]
        refused = await c.get("/openapi.json")
    assert statuses == [200, 200, 200, 429]
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 61
    assert refused.json()["detail"].startswith("more than 3 requests a minute from 127.0.0.1")


async def test_local_addresses_are_exempt_from_the_rate_limit_by_default() -> None:
    async with asgi_client(sample_app(rate_limit_per_minute=1)) as c:
        assert {(await c.get("/logo.png")).status_code for _ in range(5)} == {200}


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_count() -> None:
    app = sample_app(rate_limit_per_minute=1, trust_proxy_headers=True)
    async with asgi_client(app) as c:
        first = await c.get("/logo.png", headers={"x-forwarded-for": "203.0.113.7"})
        second = await c.get("/logo.png", headers={"x-forwarded-for": "203.0.113.7, 10.0.0.1"})
        other = await c.get("/logo.png", headers={"x-forwarded-for": "198.51.100.2"})
    assert (first.status_code, second.status_code, other.status_code) == (200, 429, 200)


async def test_a_request_past_the_timeout_gets_504_naming_the_limit() -> None:
    async with asgi_client(sample_app(request_timeout_s=0.2)) as c:
        assert (await c.get("/slow", params={"seconds": 0})).json() == {"done": True}
        response = await c.get("/slow", params={"seconds": 5})
    assert response.status_code == 504
    assert response.json() == {"detail": "the request took longer than 0.2 s and was stopped"}


async def test_requests_past_the_timeout_get_504_each_at_its_own_deadline_and_the_others_their_answers() -> None:
    """Deadlines share one timer: it fires for the oldest request and re-arms for the next one still running."""
    async with asgi_client(sample_app(request_timeout_s=0.4)) as c:
        started = time.monotonic()

        async def after(delay: float, seconds: float) -> tuple[int, float]:
            await asyncio.sleep(delay)
            response = await c.get("/slow", params={"seconds": seconds})
            return response.status_code, time.monotonic() - started

        answers = await asyncio.gather(after(0, 5), after(0.05, 0), after(0.2, 5), after(0.25, 0.1), after(0.5, 0))
    (first, first_at), (fast, _), (second, second_at), (short, _), (late, _) = answers
    assert (first, fast, second, short, late) == (504, 200, 504, 200, 200)
    assert 0.4 <= first_at < 1.0  # well before the 5 s it asked for
    assert 0.6 <= second_at < 1.2


async def test_a_request_cancelled_from_outside_is_cancelled_not_answered_504() -> None:
    """Only the deadline's own cancellation becomes a 504; the server's (a shutdown) goes on up."""
    entered = asyncio.Event()
    sent: list[Message] = []

    async def waits(_scope: Scope, _receive: Receive, _send: Send) -> None:
        entered.set()
        await asyncio.sleep(5)

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    timeout = RequestTimeout(waits, timeout_s=10)
    task = asyncio.ensure_future(timeout({"type": "http", "method": "GET", "path": "/x", "headers": []}, receive, send))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sent == []
    assert timeout.deadlines().running == {}
