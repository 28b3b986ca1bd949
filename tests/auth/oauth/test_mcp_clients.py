"""End to end on real servers: the official `mcp` SDK client connects to each plugin under `--auth oauth` with no
operator step but creating the user: discovery, registration (or a client ID metadata document), PKCE sign-in,
token exchange with `resource`, tools, a tool call, refresh and revocation."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client

from tests.auth.oauth.mcp_client import MemoryStorage, Person, document_server, provider
from tests.auth.oauth_flow import PASSWORD, confirm_if_asked, query_of, request_id_of, run_plugkit
from tests.helpers import PluginServer, free_port
from tests.reliability.harness import TARGETS

pytestmark = pytest.mark.slow

# A tool each plugin answers on a fresh data directory, and what its answer holds.
CALLS: dict[str, tuple[str, dict[str, Any], str]] = {
    "todo": ("addTodo", {"username": "alice", "todo": "water the plants"}, "water the plants"),
    "sports": ("getTeams", {}, "Lakers"),
    "retrieval": ("queryDocuments", {"queries": [{"query": "tides and the moon"}]}, "tides and the moon"),
}


def serve(name: str, data_dir: Path, env: dict[str, str] | None = None) -> PluginServer:
    """A real `plugkit serve NAME --auth oauth --mcp`, with one user made by the CLI and nothing else."""
    scope = ("--plugin", name, "--data-dir", str(data_dir))
    run_plugkit("users", "create", "alice", "--password-stdin", *scope, stdin=PASSWORD + "\n")
    target = TARGETS[name]
    env = {"PLUGKIT_ACCESS_LOG": "false", **target.env, "PLUGKIT_AUTH": "oauth", **(env or {})}
    server = PluginServer(name, "--data-dir", str(data_dir), *target.serve_args, "--mcp", env=env)
    return server.start(timeout=target.start_timeout)


@pytest.fixture(scope="module", params=list(CALLS))
def plugin(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, PluginServer]]:
    """One server per plugin for the module: each test registers a client of its own, which alice has not allowed."""
    server = serve(request.param, tmp_path_factory.mktemp(request.param))
    try:
        yield request.param, server
    finally:
        server.stop()


async def connect_and_call(server_url: str, oauth: OAuthClientProvider, name: str) -> tuple[list[str], str]:
    tool, arguments, _ = CALLS[name]
    async with httpx2.AsyncClient(auth=oauth, timeout=60) as http:
        async with Client(streamable_http_client(server_url, http_client=http)) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return names, " ".join(getattr(c, "text", "") for c in result.content)


async def revoke(base: str, storage: MemoryStorage, token: str) -> None:
    info = storage.client_info
    assert info is not None
    auth = (info.client_id, info.client_secret) if info.client_secret else None
    data = {"token": token} if auth else {"token": token, "client_id": info.client_id}
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(f"{base}/oauth/revoke", data=data, auth=auth)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("auth_method", [None, "none"])
async def test_the_sdk_client_registers_signs_in_calls_a_tool_refreshes_and_is_revoked(
    plugin: tuple[str, PluginServer], auth_method: str | None
) -> None:
    name, server = plugin
    person = Person()
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    oauth, storage = provider(f"{server.base_url}/mcp", person, redirect_uri, auth_method=auth_method)
    names, text = await connect_and_call(f"{server.base_url}/mcp", oauth, name)
    assert CALLS[name][0] in names and CALLS[name][2] in text
    info = storage.client_info
    assert info is not None and info.client_id.startswith("pkd_")
    assert (info.client_secret is None) == (auth_method == "none")
    authorization = query_of(person.authorization_urls[0].replace("?", "?", 1))
    assert authorization["resource"] == f"{server.base_url}/mcp"
    assert authorization["code_challenge_method"] == "S256"
    assert "SDK test client" in person.pages[0] and "127.0.0.1" in person.pages[0]
    assert "You have not allowed" in person.pages[1] and "SDK test client" in person.pages[1]
    first = storage.tokens
    assert first is not None and first.refresh_token

    oauth.context.token_expiry_time = time.time() - 1  # the access token has expired: the client refreshes
    await connect_and_call(f"{server.base_url}/mcp", oauth, name)
    refreshed = storage.tokens
    assert refreshed is not None and refreshed.access_token != first.access_token
    assert len(person.authorization_urls) == 1, "a refresh must not send the person to sign in again"
    async with httpx.AsyncClient(timeout=30) as http:
        old = await http.post(f"{server.base_url}/mcp", headers={"Authorization": f"Bearer {first.access_token}"})
        assert old.status_code == 401

    await revoke(server.base_url, storage, refreshed.access_token)
    async with httpx.AsyncClient(timeout=30) as http:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        gone = await http.post(
            f"{server.base_url}/mcp", json=body, headers={"Authorization": f"Bearer {refreshed.access_token}"}
        )
    assert gone.status_code == 401
    assert 'error="invalid_token"' in gone.headers["www-authenticate"]
    assert (
        f'resource_metadata="{server.base_url}/.well-known/oauth-protected-resource/mcp"'
        in gone.headers["www-authenticate"]
    )


async def test_the_sdk_client_signs_in_with_a_client_id_metadata_document(tmp_path: Path) -> None:
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"

    def document(url: str) -> dict[str, Any]:
        return {
            "client_id": url,
            "client_name": "Metadata client",
            "redirect_uris": [redirect_uri],
            "token_endpoint_auth_method": "none",
        }

    server = serve(
        "todo", tmp_path, {"PLUGKIT_OAUTH_ALLOW_PRIVATE_CLIENT_METADATA": "true", "PLUGKIT_OAUTH_REGISTRATION": "off"}
    )
    try:
        with document_server(document) as url:
            person = Person()
            oauth, storage = provider(f"{server.base_url}/mcp", person, redirect_uri, client_metadata_url=url)
            names, text = await connect_and_call(f"{server.base_url}/mcp", oauth, "todo")
            assert storage.client_info is not None and storage.client_info.client_id == url
            assert "Metadata client" in person.pages[0]
            first = storage.tokens
            assert first is not None
            oauth.context.token_expiry_time = time.time() - 1
            await connect_and_call(f"{server.base_url}/mcp", oauth, "todo")
            assert storage.tokens is not None and storage.tokens.access_token != first.access_token
            await revoke(server.base_url, storage, storage.tokens.access_token)
    finally:
        server.stop()
    assert "addTodo" in names and "water the plants" in text


async def test_without_the_development_setting_a_metadata_document_on_a_private_address_is_refused(
    tmp_path: Path,
) -> None:
    server = serve("todo", tmp_path)
    try:
        with document_server(lambda url: {"client_id": url, "redirect_uris": ["http://127.0.0.1:9/cb"]}) as url:
            async with httpx.AsyncClient(timeout=30) as http:
                page = await http.get(
                    f"{server.base_url}/oauth/authorize",
                    params={
                        "response_type": "code",
                        "client_id": url,
                        "redirect_uri": "http://127.0.0.1:9/cb",
                        "state": "s",
                    },
                )
    finally:
        server.stop()
    assert page.status_code == 400 and "https" in page.text


async def test_on_a_real_server_the_flow_refuses_what_it_must(tmp_path: Path) -> None:
    server = serve("todo", tmp_path)
    base, callback = server.base_url, "http://127.0.0.1:8123/cb"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            refused = await http.post("/oauth/register", json={"redirect_uris": ["http://app.example/cb"]})
            assert refused.status_code == 400 and refused.json()["error"] == "invalid_redirect_uri"
            grants = ["authorization_code", "refresh_token"]
            registered = await http.post(
                "/oauth/register",
                json={"redirect_uris": [callback], "token_endpoint_auth_method": "none", "grant_types": grants},
            )
            client_id = registered.json()["client_id"]
            verifier = "v" * 64
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            request = {"response_type": "code", "client_id": client_id, "redirect_uri": callback, "state": "s"}
            with_pkce = {**request, "code_challenge": challenge, "code_challenge_method": "S256"}

            async def error_of(params: dict[str, str]) -> str:
                answer = await http.get("/oauth/authorize", params=params)
                assert answer.status_code == 303, answer.text
                return query_of(answer.headers["location"])["error"]

            assert await error_of(request) == "invalid_request"  # no PKCE
            assert await error_of({**request, "code_challenge": challenge, "code_challenge_method": "plain"}) == (
                "invalid_request"
            )
            assert await error_of({**with_pkce, "resource": "https://elsewhere.example/mcp"}) == "invalid_target"
            unregistered = await http.get(
                "/oauth/authorize", params={**with_pkce, "redirect_uri": "https://x.example/cb"}
            )
            assert unregistered.status_code == 400 and "location" not in unregistered.headers

            page = await http.get("/oauth/authorize", params={**with_pkce, "resource": f"{base}/mcp"})
            form = {"request_id": request_id_of(page.text), "username": "alice", "password": PASSWORD}
            answer = await confirm_if_asked(http, await http.post("/oauth/authorize", data=form))
            code = query_of(answer.headers["location"])["code"]
            exchange = {"grant_type": "authorization_code", "client_id": client_id, "code": code}
            exchange |= {"redirect_uri": callback, "code_verifier": verifier, "resource": f"{base}/mcp"}
            issued = await http.post("/oauth/token", data=exchange)
            assert issued.status_code == 200, issued.text
            bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
            assert (await http.get("/todos/alice", headers=bearer)).status_code == 200
            # The same server reached by another name is another resource: the token is refused there.
            elsewhere = base.replace("127.0.0.1", "localhost")
            other = await http.get(f"{elsewhere}/todos/alice", headers=bearer)
            assert other.status_code == 401 and "another resource" in other.text
            reused = await http.post("/oauth/token", data=exchange)
            assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
            assert (await http.get("/todos/alice", headers=bearer)).status_code == 401  # revoked by the reuse
    finally:
        server.stop()
