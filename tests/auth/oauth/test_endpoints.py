"""The authorization server for MCP clients, in-process: metadata, registration, PKCE, resource-bound tokens, and
every way they must fail."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from mcp.shared.auth import OAuthMetadata, ProtectedResourceMetadata
from sqlalchemy import update

from plugkit.auth import tables
from plugkit.auth.credentials import utcnow
from plugkit.mcp import mount_mcp
from plugkit.plugins.todo.app import create_app
from plugkit.plugins.todo.settings import TodoSettings
from tests.auth.oauth_flow import PASSWORD, confirm_if_asked, query_of, request_id_of
from tests.helpers import asgi_client

BASE = "http://testserver"
CALLBACK = "http://127.0.0.1:33418/callback"
CLAUDE = "https://claude.ai/api/mcp/auth_callback"


@dataclass
class Server:
    app: FastAPI
    http: httpx.AsyncClient


async def start(tmp_path: Path, **settings: Any) -> AsyncIterator[Server]:
    app = create_app(TodoSettings(auth="oauth", data_dir=tmp_path, **settings))
    app.router.routes.append(app.state.auth.resource_metadata_route("/mcp"))  # what mount_mcp adds for the auth
    async with asgi_client(app, BASE) as http:
        await app.state.auth.users.set_password("alice", PASSWORD)
        yield Server(app, http)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async for s in start(tmp_path, auth_failure_limit=3):
        yield s


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


async def register(s: Server, **metadata: Any) -> httpx.Response:
    return await s.http.post("/oauth/register", json={"redirect_uris": [CALLBACK], "client_name": "Tester", **metadata})


async def public_client(s: Server, redirect_uri: str = CALLBACK) -> str:
    grants = ["authorization_code", "refresh_token"]
    answer = await register(s, redirect_uris=[redirect_uri], token_endpoint_auth_method="none", grant_types=grants)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["client_id"])


async def authorize(s: Server, client_id: str, redirect_uri: str = CALLBACK, **extra: str) -> httpx.Response:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "state": "st", **extra}
    return await s.http.get("/oauth/authorize", params=params)


async def signed_in(s: Server, client_id: str, redirect_uri: str = CALLBACK, **extra: str) -> dict[str, str]:
    page = await authorize(s, client_id, redirect_uri, **extra)
    assert page.status_code == 200, page.text
    form = {"request_id": request_id_of(page.text), "username": "alice", "password": PASSWORD, "decision": "allow"}
    answer = await confirm_if_asked(s.http, await s.http.post("/oauth/authorize", data=form))
    assert answer.status_code == 303, answer.text
    return query_of(answer.headers["location"])


async def tokens(s: Server, client_id: str, resource: str | None = f"{BASE}/mcp") -> dict[str, Any]:
    verifier, challenge = pkce()
    extra = {"code_challenge": challenge, "code_challenge_method": "S256"}
    if resource:
        extra["resource"] = resource
    query = await signed_in(s, client_id, **extra)
    data = {"grant_type": "authorization_code", "client_id": client_id, "code": query["code"]}
    data |= {"redirect_uri": CALLBACK, "code_verifier": verifier} | ({"resource": resource} if resource else {})
    answer = await s.http.post("/oauth/token", data=data)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_the_authorization_server_metadata_states_what_mcp_clients_need(server: Server) -> None:
    document = (await server.http.get("/.well-known/oauth-authorization-server")).json()
    assert OAuthMetadata.model_validate(document)
    assert document["issuer"] == BASE
    assert document["registration_endpoint"] == f"{BASE}/oauth/register"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["token_endpoint_auth_methods_supported"] == ["none", "client_secret_post", "client_secret_basic"]
    assert document["client_id_metadata_document_supported"] is True
    assert document["authorization_response_iss_parameter_supported"] is True
    assert (await server.http.get("/.well-known/openid-configuration")).json() == document


async def test_behind_a_proxy_the_metadata_names_the_public_url(tmp_path: Path) -> None:
    async for s in start(tmp_path, public_url="https://plugin.example.com/"):
        document = (await s.http.get("/.well-known/oauth-authorization-server")).json()
        resource = (await s.http.get("/.well-known/oauth-protected-resource/mcp")).json()
        assert document["issuer"] == "https://plugin.example.com"
        assert document["token_endpoint"] == "https://plugin.example.com/oauth/token"
        assert resource["resource"] == "https://plugin.example.com/mcp"
        assert resource["authorization_servers"] == [document["issuer"]]


async def test_protected_resource_metadata_is_served_at_the_root_and_for_mcp(server: Server) -> None:
    root = (await server.http.get("/.well-known/oauth-protected-resource")).json()
    mcp = (await server.http.get("/.well-known/oauth-protected-resource/mcp")).json()
    assert ProtectedResourceMetadata.model_validate(mcp)
    assert root["resource"] == BASE and mcp["resource"] == f"{BASE}/mcp"
    assert root["authorization_servers"] == mcp["authorization_servers"] == [BASE]


async def test_a_401_from_the_api_names_the_root_resource_metadata(server: Server) -> None:
    refused = await server.http.get("/todos/alice")
    assert refused.status_code == 401
    assert f'resource_metadata="{BASE}/.well-known/oauth-protected-resource"' in refused.headers["www-authenticate"]


async def test_registration_returns_a_secret_once_for_a_confidential_client(server: Server) -> None:
    answer = await register(server, redirect_uris=[CLAUDE])
    assert answer.status_code == 201 and answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["token_endpoint_auth_method"] == "client_secret_basic" and body["client_secret"].startswith("pks_")
    assert body["redirect_uris"] == [CLAUDE] and body["client_name"] == "Tester"
    async with server.app.state.auth.db.read() as session:
        stored = (await session.execute(tables.oauth_clients.select())).all()
    assert body["client_secret"] not in repr(stored)


@pytest.mark.parametrize(
    ("metadata", "error", "field"),
    [
        ({"redirect_uris": ["http://evil.example/cb"]}, "invalid_redirect_uri", "redirect_uris[0]"),
        ({"redirect_uris": [CALLBACK, "https://a.example/cb#frag"]}, "invalid_redirect_uri", "redirect_uris[1]"),
        ({"redirect_uris": ["cursor://callback"]}, "invalid_redirect_uri", "redirect_uris[0]"),
        ({"redirect_uris": [f"https://a.example/{i}" for i in range(11)]}, "invalid_redirect_uri", "redirect_uris"),
        ({"redirect_uris": []}, "invalid_redirect_uri", "redirect_uris"),
        ({"token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata", "token_endpoint_auth_method"),
        ({"grant_types": ["client_credentials"]}, "invalid_client_metadata", "grant_types"),
        ({"response_types": ["token"]}, "invalid_client_metadata", "response_types"),
        ({"scope": "admin"}, "invalid_client_metadata", "scope"),
        ({"client_name": 7}, "invalid_client_metadata", "client_name"),
    ],
)
async def test_a_bad_registration_is_a_400_naming_the_field(
    server: Server, metadata: dict[str, Any], error: str, field: str
) -> None:
    answer = await register(server, **metadata)
    assert answer.status_code == 400
    assert answer.json()["error"] == error and field in answer.json()["error_description"]


async def test_a_registration_body_that_is_not_an_object_is_invalid_client_metadata(server: Server) -> None:
    for body in (b"[]", b"not json", b'"x"'):
        answer = await server.http.post("/oauth/register", content=body, headers={"content-type": "application/json"})
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_client_metadata"


async def test_loopback_redirects_may_use_any_port_and_https_ones_must_match(server: Server) -> None:
    client_id = await public_client(server, "http://127.0.0.1:1111/cb")
    _, challenge = pkce()
    pkce_params = {"code_challenge": challenge, "code_challenge_method": "S256"}
    assert (await authorize(server, client_id, "http://127.0.0.1:2222/cb", **pkce_params)).status_code == 200
    assert (await authorize(server, client_id, "http://127.0.0.1:2222/other", **pkce_params)).status_code == 400
    unregistered = await authorize(server, client_id, "https://attacker.example/cb", **pkce_params)
    assert unregistered.status_code == 400 and "location" not in unregistered.headers


async def test_registration_can_be_turned_off(tmp_path: Path) -> None:
    async for s in start(tmp_path, oauth_registration="off"):
        assert (await register(s)).status_code == 403
        metadata = (await s.http.get("/.well-known/oauth-authorization-server")).json()
        assert "registration_endpoint" not in metadata


async def test_registrations_are_limited_per_address_and_capped_in_total(tmp_path: Path) -> None:
    async for s in start(tmp_path, oauth_registrations_per_hour=2, trust_proxy_headers=True):
        first = {"x-forwarded-for": "198.51.100.1"}
        statuses = [
            (await s.http.post("/oauth/register", json={"redirect_uris": [CLAUDE]}, headers=first)).status_code
            for _ in range(3)
        ]
        assert statuses == [201, 201, 429]
        other = await s.http.post(
            "/oauth/register", json={"redirect_uris": [CLAUDE]}, headers={"x-forwarded-for": "198.51.100.2"}
        )
        assert other.status_code == 201
    async for s in start(tmp_path / "capped", oauth_max_clients=1):
        assert (await register(s)).status_code == 201
        refused = await register(s)
        assert refused.status_code == 403 and "as many registered clients" in refused.json()["error_description"]


async def test_registrations_never_used_within_a_day_expire(server: Server) -> None:
    unused, used = await public_client(server), await public_client(server)
    await tokens(server, used)
    async with server.app.state.auth.db.write() as session:
        await session.execute(update(tables.oauth_clients).values(created_at=utcnow() - timedelta(days=2)))
    await public_client(server)  # a registration sweeps the expired ones
    assert await server.app.state.auth.clients.get(unused) is None
    assert await server.app.state.auth.clients.get(used) is not None


async def test_a_registered_client_must_send_pkce_and_plain_is_refused(server: Server) -> None:
    client_id = await public_client(server)
    missing = await authorize(server, client_id)
    assert missing.status_code == 303
    query = query_of(missing.headers["location"])
    assert query["error"] == "invalid_request" and "code_challenge" in query["error_description"]
    assert query["iss"] == BASE and query["state"] == "st"
    plain = await authorize(server, client_id, code_challenge="c" * 43, code_challenge_method="plain")
    assert query_of(plain.headers["location"])["error"] == "invalid_request"


async def test_a_wrong_code_verifier_is_invalid_grant(server: Server) -> None:
    client_id = await public_client(server)
    _, challenge = pkce()
    query = await signed_in(server, client_id, code_challenge=challenge, code_challenge_method="S256")
    data = {"grant_type": "authorization_code", "client_id": client_id, "code": query["code"], "redirect_uri": CALLBACK}
    assert (await server.http.post("/oauth/token", data=data)).json()["error"] == "invalid_grant"
    wrong = await server.http.post("/oauth/token", data={**data, "code_verifier": pkce()[0]})
    assert wrong.json()["error"] == "invalid_grant"


async def test_the_authorization_response_carries_iss(server: Server) -> None:
    client_id = await public_client(server)
    _, challenge = pkce()
    query = await signed_in(server, client_id, code_challenge=challenge, code_challenge_method="S256")
    assert query["iss"] == BASE and query["state"] == "st" and query["code"]


async def test_a_resource_that_is_not_this_plugin_is_invalid_target(server: Server) -> None:
    client_id = await public_client(server)
    _, challenge = pkce()
    pkce_params = {"code_challenge": challenge, "code_challenge_method": "S256"}
    for resource in ("https://other.example/mcp", f"{BASE}/elsewhere", "not a uri", f"{BASE}/mcp#x"):
        answer = await authorize(server, client_id, resource=resource, **pkce_params)
        assert query_of(answer.headers["location"])["error"] == "invalid_target", resource


async def test_a_token_request_for_another_resource_is_invalid_target(server: Server) -> None:
    client_id = await public_client(server)
    verifier, challenge = pkce()
    query = await signed_in(
        server, client_id, code_challenge=challenge, code_challenge_method="S256", resource=f"{BASE}/mcp"
    )
    data = {"grant_type": "authorization_code", "client_id": client_id, "code": query["code"], "redirect_uri": CALLBACK}
    data["code_verifier"] = verifier
    for resource in ("https://other.example/mcp", BASE):
        answer = await server.http.post("/oauth/token", data={**data, "resource": resource})
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_target", resource
    assert (await server.http.post("/oauth/token", data={**data, "resource": f"{BASE}/mcp"})).status_code == 200


async def test_a_token_for_another_resource_is_refused_by_mcp_and_the_api(tmp_path: Path) -> None:
    app = mount_mcp(create_app(TodoSettings(auth="oauth", data_dir=tmp_path)))
    async with asgi_client(app, BASE) as http:
        await app.state.auth.users.set_password("alice", PASSWORD)
        s = Server(app, http)
        issued = await tokens(s, await public_client(s))
        bearer = {"Authorization": f"Bearer {issued['access_token']}"}
        assert (await http.get("/todos/alice", headers=bearer)).status_code == 200
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://another-plugin.example") as elsewhere:
            api = await elsewhere.get("/todos/alice", headers=bearer)
            mcp = await elsewhere.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=bearer)
    for refused in (api, mcp):
        assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]
        assert "another resource" in refused.text


async def test_a_refresh_keeps_the_audience_and_cannot_change_it(server: Server) -> None:
    client_id = await public_client(server)
    issued = await tokens(server, client_id)
    refresh = {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": issued["refresh_token"]}
    moved = await server.http.post("/oauth/token", data={**refresh, "resource": BASE})
    assert moved.status_code == 400 and moved.json()["error"] == "invalid_target"
    kept = await server.http.post("/oauth/token", data={**refresh, "resource": f"{BASE}/mcp"})
    assert kept.status_code == 200, kept.text
    async with server.app.state.auth.db.read() as session:
        audiences = {row.audience for row in (await session.execute(tables.oauth_tokens.select())).all()}
    assert audiences == {f"{BASE}/mcp"}


async def test_a_reused_code_is_refused_and_revokes_its_tokens(server: Server) -> None:
    client_id = await public_client(server)
    verifier, challenge = pkce()
    query = await signed_in(server, client_id, code_challenge=challenge, code_challenge_method="S256")
    data = {"grant_type": "authorization_code", "client_id": client_id, "code": query["code"]}
    data |= {"redirect_uri": CALLBACK, "code_verifier": verifier}
    first = await server.http.post("/oauth/token", data=data)
    again = await server.http.post("/oauth/token", data=data)
    assert first.status_code == 200 and again.json()["error"] == "invalid_grant"
    bearer = {"Authorization": f"Bearer {first.json()['access_token']}"}
    assert (await server.http.get("/todos/alice", headers=bearer)).status_code == 401


async def test_a_public_client_that_sends_a_secret_or_a_confidential_one_without_is_invalid_client(
    server: Server,
) -> None:
    confidential = (await register(server)).json()["client_id"]
    data = {"grant_type": "refresh_token", "refresh_token": "pkf_x", "client_id": confidential}
    assert (await server.http.post("/oauth/token", data=data)).status_code == 401
    public = await public_client(server)
    answer = await server.http.post("/oauth/token", data={**data, "client_id": public, "client_secret": "guess"})
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"


async def test_the_consent_page_names_the_client_and_the_redirect_host_and_a_new_client_is_confirmed(
    server: Server,
) -> None:
    await server.app.state.auth.users.set_password("bob", PASSWORD)
    answer = await register(server, redirect_uris=[CLAUDE], client_name="Claude <b>")
    client_id = answer.json()["client_id"]
    _, challenge = pkce()
    pkce_params = {"code_challenge": challenge, "code_challenge_method": "S256"}

    async def sign_in_as(user: str) -> httpx.Response:
        page = await authorize(server, client_id, CLAUDE, **pkce_params)
        assert "Claude &lt;b&gt;" in page.text and "claude.ai" in page.text
        form = {"request_id": request_id_of(page.text), "username": user, "password": PASSWORD, "decision": "allow"}
        return await server.http.post("/oauth/authorize", data=form)

    first = await sign_in_as("alice")
    assert first.status_code == 200 and "You have not allowed" in first.text and "Claude &lt;b&gt;" in first.text
    assert "location" not in first.headers
    confirmed = await server.http.post("/oauth/authorize", data={"request_id": request_id_of(first.text)})
    assert confirmed.status_code == 303 and query_of(confirmed.headers["location"])["code"]
    assert (await sign_in_as("alice")).status_code == 303  # allowed before: no question
    bob = await sign_in_as("bob")
    assert bob.status_code == 200 and "You have not allowed" in bob.text  # each person confirms for themselves
    denied = await server.http.post(
        "/oauth/authorize", data={"request_id": request_id_of(bob.text), "decision": "deny"}
    )
    assert query_of(denied.headers["location"])["error"] == "access_denied"


async def test_behind_a_trusted_proxy_one_caller_cannot_lock_out_another(tmp_path: Path) -> None:
    async for s in start(tmp_path, auth_failure_limit=3, trust_proxy_headers=True):
        client_id, secret = await s.app.state.auth.clients.create(name="ChatGPT")
        attacker, user = {"x-forwarded-for": "203.0.113.7"}, {"x-forwarded-for": "198.51.100.9"}
        statuses = []
        for i in range(4):
            bad = {
                "grant_type": "refresh_token",
                "refresh_token": "x",
                "client_id": f"pkc_guess{i}",
                "client_secret": "x",
            }
            statuses.append((await s.http.post("/oauth/token", data=bad, headers=attacker)).status_code)
        assert statuses == [401, 401, 401, 429]
        good = {
            "grant_type": "refresh_token",
            "refresh_token": "pkf_none",
            "client_id": client_id,
            "client_secret": secret,
        }
        answer = await s.http.post("/oauth/token", data=good, headers=user)
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"  # authenticated, not locked out


async def test_token_audiences_are_kept_for_a_bounded_number_of_host_names(server: Server) -> None:
    from plugkit.auth.oauth.endpoints import AUDIENCES_KEPT

    client_id = await public_client(server)
    bearer = {"Authorization": f"Bearer {(await tokens(server, client_id))['access_token']}"}
    for n in range(AUDIENCES_KEPT + 10):  # the Host header is the client's to choose
        refused = await server.http.get("/todos/alice", headers={**bearer, "Host": f"h{n}.example"})
        assert refused.status_code == 401 and "another resource" in refused.text
    assert len(server.app.state.auth.server._audiences) <= AUDIENCES_KEPT
    assert (await server.http.get("/todos/alice", headers=bearer)).status_code == 200  # its own host, still right
