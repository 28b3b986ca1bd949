from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from openapi_spec_validator import validate
from pydantic import BaseModel

from plugkit.app import PluginInfo, create_plugin_app
from plugkit.auth.none import NoAuthMethod
from plugkit.manifest import Api, Manifest, validate_manifest
from plugkit.settings import PluginSettings
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
    return create_plugin_app(info, [router], PluginSettings(**settings), NoAuthMethod())  # type: ignore[arg-type]


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
        "long",
    }


async def test_logo_legal_and_docs_pages_are_served(client: httpx.AsyncClient) -> None:
    logo = await client.get("/logo.png")
    assert logo.headers["content-type"] == "image/png" and logo.content.startswith(b"\x89PNG")
    legal = await client.get("/legal")
    assert legal.status_code == 200 and "Sample" in legal.text and "legal@plugkit.dev" in legal.text
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text


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
