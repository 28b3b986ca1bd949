"""The OAuth authorization server, in-process: the flow exactly as the model host ran it, and every way it must fail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from authlib.oauth2.rfc7636.challenge import create_s256_code_challenge
from fastapi import FastAPI
from sqlalchemy import update

from plugkit.auth import tables
from plugkit.auth.credentials import utcnow
from plugkit.plugins.todo.app import create_app
from plugkit.plugins.todo.settings import TodoSettings
from tests.auth.oauth_flow import (
    GPT_CALLBACK,
    HOST_CALLBACK,
    PASSWORD,
    code_grant,
    exchange,
    open_sign_in,
    query_of,
    request_id_of,
    sign_in,
)
from tests.helpers import asgi_client

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


@dataclass
class Server:
    app: FastAPI
    client: httpx.AsyncClient
    client_id: str
    secret: str


async def start(settings: TodoSettings) -> AsyncIterator[Server]:
    app = create_app(settings)
    async with asgi_client(app) as client:
        await app.state.auth.users.set_password("alice", PASSWORD)
        await app.state.auth.users.set_password("bob", PASSWORD)
        client_id, secret = await app.state.auth.clients.create(name="ChatGPT")
        yield Server(app, client, client_id, secret)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async for s in start(TodoSettings(auth="oauth", data_dir=tmp_path, auth_failure_limit=3)):
        yield s


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def tokens_for(s: Server, user: str = "alice") -> dict[str, str]:
    query = await sign_in(s.client, s.client_id, user)
    answer = await code_grant(s.client, s.client_id, s.secret, query["code"])
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("content_type", [JSON, FORM])
async def test_the_whole_flow_as_the_host_ran_it_works_with_either_content_type(
    tmp_path: Path, content_type: str
) -> None:
    settings = TodoSettings(auth="oauth", data_dir=tmp_path, oauth_content_type=content_type)
    async for s in start(settings):
        manifest = (await s.client.get("/.well-known/ai-plugin.json")).json()
        assert manifest["auth"] == {
            "type": "oauth",
            "client_url": "http://testserver/oauth/authorize",
            "scope": "plugin",
            "authorization_url": "http://testserver/oauth/token",
            "authorization_content_type": content_type,
            "verification_tokens": {},
        }
        query = await sign_in(s.client, s.client_id, "alice", state="opaque-state-42")
        assert query["state"] == "opaque-state-42"
        answer = await code_grant(s.client, s.client_id, s.secret, query["code"], content_type=content_type)
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "no-store"
        body = answer.json()
        assert body["token_type"] == "bearer" and body["expires_in"] == 3600 and body["scope"] == "plugin"
        assert body["access_token"] and body["refresh_token"]

        added = await s.client.post("/todos/alice", json={"todo": "buy milk"}, headers=bearer(body["access_token"]))
        assert added.status_code == 200
        listed = await s.client.get("/todos/alice", headers=bearer(body["access_token"]))
        assert listed.json()["todos"] == ["buy milk"]

        refresh = {
            "grant_type": "refresh_token",
            "client_id": s.client_id,
            "client_secret": s.secret,
            "refresh_token": body["refresh_token"],
        }
        refreshed = await exchange(s.client, refresh, content_type)
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["refresh_token"] != body["refresh_token"]
        assert (await s.client.get("/todos/alice", headers=bearer(refreshed.json()["access_token"]))).status_code == 200


async def test_another_users_list_is_forbidden_to_an_oauth_principal(server: Server) -> None:
    token = (await tokens_for(server, "alice"))["access_token"]
    answer = await server.client.get("/todos/bob", headers=bearer(token))
    assert answer.status_code == 403
    assert "alice" in answer.json()["detail"]


async def test_the_gpt_callback_form_is_allowed_by_the_default_registration(server: Server) -> None:
    query = await sign_in(server.client, server.client_id, redirect_uri=GPT_CALLBACK)
    answer = await code_grant(server.client, server.client_id, server.secret, query["code"], redirect_uri=GPT_CALLBACK)
    assert answer.status_code == 200


async def test_a_reused_code_is_rejected_and_revokes_the_tokens_issued_from_it(server: Server) -> None:
    query = await sign_in(server.client, server.client_id)
    first = await code_grant(server.client, server.client_id, server.secret, query["code"])
    token = first.json()["access_token"]
    assert (await server.client.get("/todos/alice", headers=bearer(token))).status_code == 200
    again = await code_grant(server.client, server.client_id, server.secret, query["code"])
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert (await server.client.get("/todos/alice", headers=bearer(token))).status_code == 401
    refresh = {
        "grant_type": "refresh_token",
        "client_id": server.client_id,
        "client_secret": server.secret,
        "refresh_token": first.json()["refresh_token"],
    }
    assert (await exchange(server.client, refresh)).json()["error"] == "invalid_grant"


async def test_an_expired_code_is_rejected(server: Server) -> None:
    query = await sign_in(server.client, server.client_id)
    async with server.app.state.database.write() as session:
        await session.execute(update(tables.oauth_codes).values(expires_at=utcnow() - timedelta(seconds=1)))
    answer = await code_grant(server.client, server.client_id, server.secret, query["code"])
    assert answer.status_code == 400
    assert answer.json() == {"error": "invalid_grant", "error_description": "the code has expired"}


async def test_an_unregistered_redirect_uri_gets_an_error_page_and_no_redirect(server: Server) -> None:
    answer = await open_sign_in(server.client, server.client_id, redirect_uri="https://evil.example/callback")
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert "not registered" in answer.text
    lookalike = "https://chat.openai.com/aip/x/y/oauth/callback"
    assert (await open_sign_in(server.client, server.client_id, redirect_uri=lookalike)).status_code == 400


async def test_a_redirect_uri_differing_at_the_token_endpoint_is_invalid_grant(server: Server) -> None:
    query = await sign_in(server.client, server.client_id)
    other = "https://chat.openai.com/aip/plugin-other/oauth/callback"
    answer = await code_grant(server.client, server.client_id, server.secret, query["code"], redirect_uri=other)
    assert answer.json()["error"] == "invalid_grant"


async def test_a_wrong_client_secret_is_invalid_client_with_401(server: Server) -> None:
    query = await sign_in(server.client, server.client_id)
    answer = await code_grant(server.client, server.client_id, "pks_wrong", query["code"])
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"
    basic = await exchange(
        server.client,
        {"grant_type": "authorization_code", "code": query["code"], "redirect_uri": HOST_CALLBACK},
        basic=(server.client_id, "pks_wrong"),
    )
    assert basic.status_code == 401 and basic.headers["www-authenticate"].startswith("Basic")


async def test_client_credentials_by_http_basic_are_accepted(server: Server) -> None:
    query = await sign_in(server.client, server.client_id)
    params = {"grant_type": "authorization_code", "code": query["code"], "redirect_uri": HOST_CALLBACK}
    answer = await exchange(server.client, params, FORM, basic=(server.client_id, server.secret))
    assert answer.status_code == 200, answer.text


async def test_a_code_issued_to_another_client_is_invalid_grant(server: Server) -> None:
    query = await sign_in(server.client, server.client_id)
    other_id, other_secret = await server.app.state.auth.clients.create()
    answer = await code_grant(server.client, other_id, other_secret, query["code"])
    assert answer.json()["error"] == "invalid_grant"


async def test_a_revoked_access_token_gets_401(server: Server) -> None:
    tokens = await tokens_for(server)
    revoke = {"token": tokens["access_token"], "client_id": server.client_id, "client_secret": server.secret}
    assert (await server.client.post("/oauth/revoke", data=revoke)).status_code == 200
    answer = await server.client.get("/todos/alice", headers=bearer(tokens["access_token"]))
    assert answer.status_code == 401
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]


async def test_an_expired_access_token_gets_401(server: Server) -> None:
    tokens = await tokens_for(server)
    async with server.app.state.database.write() as session:
        await session.execute(update(tables.oauth_tokens).values(access_expires_at=utcnow() - timedelta(seconds=1)))
    assert (await server.client.get("/todos/alice", headers=bearer(tokens["access_token"]))).status_code == 401


async def test_refresh_rotates_and_a_reused_refresh_token_ends_the_chain(server: Server) -> None:
    tokens = await tokens_for(server)
    refresh = {"grant_type": "refresh_token", "client_id": server.client_id, "client_secret": server.secret}
    second = (await exchange(server.client, {**refresh, "refresh_token": tokens["refresh_token"]})).json()
    replay = await exchange(server.client, {**refresh, "refresh_token": tokens["refresh_token"]})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert (await server.client.get("/todos/alice", headers=bearer(second["access_token"]))).status_code == 401
    after = await exchange(server.client, {**refresh, "refresh_token": second["refresh_token"]})
    assert after.json()["error"] == "invalid_grant"


async def test_a_refresh_cannot_widen_the_scope(server: Server) -> None:
    tokens = await tokens_for(server)
    params = {
        "grant_type": "refresh_token",
        "client_id": server.client_id,
        "client_secret": server.secret,
        "refresh_token": tokens["refresh_token"],
        "scope": "plugin admin",
    }
    assert (await exchange(server.client, params)).json()["error"] == "invalid_scope"


async def test_pkce_s256_is_honoured_when_the_client_sends_it(server: Server) -> None:
    verifier = "v" * 20 + "-" + "w" * 30
    challenge = {"code_challenge": create_s256_code_challenge(verifier), "code_challenge_method": "S256"}
    query = await sign_in(server.client, server.client_id, **challenge)
    params = {
        "grant_type": "authorization_code",
        "client_id": server.client_id,
        "client_secret": server.secret,
        "code": query["code"],
        "redirect_uri": HOST_CALLBACK,
    }
    missing = await exchange(server.client, params)
    assert missing.json()["error"] == "invalid_grant"
    query = await sign_in(server.client, server.client_id, **challenge)
    wrong = await exchange(server.client, {**params, "code": query["code"], "code_verifier": "x" * 50})
    assert wrong.json()["error"] == "invalid_grant"
    query = await sign_in(server.client, server.client_id, **challenge)
    right = await exchange(server.client, {**params, "code": query["code"], "code_verifier": verifier})
    assert right.status_code == 200, right.text


async def test_the_plain_pkce_method_is_refused_back_at_the_redirect_uri(server: Server) -> None:
    answer = await open_sign_in(server.client, server.client_id, code_challenge="c" * 43, code_challenge_method="plain")
    assert answer.status_code == 303
    assert query_of(answer.headers["location"])["error"] == "invalid_request"


async def test_a_missing_state_is_refused_back_at_the_redirect_uri(server: Server) -> None:
    answer = await open_sign_in(server.client, server.client_id, state="")
    assert answer.status_code == 303
    query = query_of(answer.headers["location"])
    assert query["error"] == "invalid_request" and "state" not in query


async def test_an_unsupported_response_type_and_an_unknown_scope_come_back_as_errors(server: Server) -> None:
    token_flow = await open_sign_in(server.client, server.client_id, response_type="token")
    assert query_of(token_flow.headers["location"]) == {
        "error": "unsupported_response_type",
        "error_description": "response_type=token is not supported; use code",
        "state": "st-1",
        "iss": "http://testserver",
    }
    scope = await open_sign_in(server.client, server.client_id, scope="admin")
    assert query_of(scope.headers["location"])["error"] == "invalid_scope"


async def test_an_unknown_client_gets_an_error_page(server: Server) -> None:
    answer = await open_sign_in(server.client, "pkc_nobody")
    assert answer.status_code == 400 and "not registered" in answer.text


async def test_the_sign_in_page_is_a_plain_form_without_scripts(server: Server) -> None:
    page = await open_sign_in(server.client, server.client_id)
    assert page.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/oauth/authorize">' in page.text
    assert "<script" not in page.text.lower()
    assert "ChatGPT" in page.text
    assert page.headers["x-frame-options"] == "DENY"


async def test_a_wrong_password_shows_the_form_again_without_a_code(server: Server) -> None:
    page = await open_sign_in(server.client, server.client_id)
    request_id = request_id_of(page.text)
    form = {"request_id": request_id, "username": "alice", "password": "not the password", "decision": "allow"}
    answer = await server.client.post("/oauth/authorize", data=form)
    assert answer.status_code == 400 and "location" not in answer.headers
    assert "wrong" in answer.text
    retry = await server.client.post("/oauth/authorize", data={**form, "password": PASSWORD})
    assert retry.status_code == 303


async def test_a_sign_in_form_cannot_be_submitted_twice(server: Server) -> None:
    page = await open_sign_in(server.client, server.client_id)
    form = {"request_id": request_id_of(page.text), "username": "alice", "password": PASSWORD, "decision": "allow"}
    assert (await server.client.post("/oauth/authorize", data=form)).status_code == 303
    again = await server.client.post("/oauth/authorize", data=form)
    assert again.status_code == 400 and "already used" in again.text


async def test_denying_sends_access_denied_back_with_the_state(server: Server) -> None:
    page = await open_sign_in(server.client, server.client_id, state="s-9")
    answer = await server.client.post(
        "/oauth/authorize", data={"request_id": request_id_of(page.text), "decision": "deny"}
    )
    assert answer.status_code == 303
    query = query_of(answer.headers["location"])
    assert query["error"] == "access_denied" and query["state"] == "s-9"


async def test_repeated_wrong_client_secrets_get_429(server: Server) -> None:
    params = {
        "grant_type": "authorization_code",
        "client_id": server.client_id,
        "client_secret": "pks_guess",
        "code": "x",
        "redirect_uri": HOST_CALLBACK,
    }
    statuses = [(await exchange(server.client, params)).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    blocked = await exchange(server.client, {**params, "client_secret": server.secret})
    assert blocked.status_code == 429 and blocked.json()["error"] == "temporarily_unavailable"


async def test_repeated_wrong_passwords_get_429(server: Server) -> None:
    page = await open_sign_in(server.client, server.client_id)
    form = {"request_id": request_id_of(page.text), "username": "alice", "password": "guess-guess", "decision": "allow"}
    statuses = [(await server.client.post("/oauth/authorize", data=form)).status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429]
    assert (await server.client.post("/oauth/authorize", data={**form, "password": PASSWORD})).status_code == 429


@pytest.mark.parametrize(
    ("body", "headers", "error"),
    [
        ("{not json", {"content-type": JSON}, "invalid_request"),
        ("[1, 2]", {"content-type": JSON}, "invalid_request"),
        ("grant_type=password", {"content-type": "text/plain"}, "invalid_request"),
    ],
)
async def test_a_malformed_token_request_is_invalid_request(
    server: Server, body: str, headers: dict[str, str], error: str
) -> None:
    answer = await server.client.post("/oauth/token", content=body, headers=headers)
    assert answer.status_code == 400 and answer.json()["error"] == error


@pytest.mark.parametrize("grant_type", ["password", 'pass"word\\é'])
async def test_an_unknown_grant_type_is_unsupported_grant_type(server: Server, grant_type: str) -> None:
    params = {"grant_type": grant_type, "client_id": server.client_id, "client_secret": server.secret}
    answer = await exchange(server.client, params)
    assert answer.status_code == 400 and answer.json()["error"] == "unsupported_grant_type"


async def test_only_hashes_of_codes_and_tokens_are_stored(server: Server) -> None:
    query = await sign_in(server.client, server.client_id)
    tokens = (await code_grant(server.client, server.client_id, server.secret, query["code"])).json()
    database = server.app.state.database
    rows: list[str] = []
    async with database.connect() as conn:
        for table in tables.metadata.sorted_tables:
            rows.extend(str(row) for row in (await conn.execute(table.select())).all())
    dump = "\n".join(rows)
    assert len(rows) >= 5
    for secret in (query["code"], tokens["access_token"], tokens["refresh_token"], server.secret, PASSWORD):
        assert secret not in dump


async def test_the_whole_flow_works_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    settings = TodoSettings(auth="oauth", data_dir=tmp_path, database_url=postgres_url)
    async for s in start(settings):
        tokens = await tokens_for(s)
        assert (await s.client.get("/todos/alice", headers=bearer(tokens["access_token"]))).status_code == 200
        query = await sign_in(s.client, s.client_id)
        await code_grant(s.client, s.client_id, s.secret, query["code"])
        again = await code_grant(s.client, s.client_id, s.secret, query["code"])
        assert again.json()["error"] == "invalid_grant"


ODD_AUTHORIZE_QUERIES = [
    {"client_id": "x" * 5000},
    {"client_id": "\u00e9\u0000", "redirect_uri": "\ud7ff"},
    {"redirect_uri": HOST_CALLBACK, "state": "s" * 20000, "response_type": "code"},
    {"redirect_uri": HOST_CALLBACK, "response_type": "c\u00f6de", "state": "\u2603"},
    {"redirect_uri": HOST_CALLBACK, "response_type": "code", "state": "s", "scope": "\u00e9" * 500},
    {"redirect_uri": HOST_CALLBACK, "response_type": "code", "state": "s", "code_challenge": "\u00e9" * 50},
]
ODD_TOKEN_BODIES: list[object] = [
    {"grant_type": "authorization_code", "code": {"nested": 1}, "redirect_uri": ["a"]},
    {"grant_type": "refresh_token", "refresh_token": "r" * 100000},
    {"grant_type": "authorization_code", "code": "\u0000", "redirect_uri": "\ud7ff", "code_verifier": "\u00e9" * 60},
    {"grant_type": True, "client_id": None},
    "just a string",
    None,
]


@pytest.mark.parametrize("query", ODD_AUTHORIZE_QUERIES)
async def test_odd_authorization_requests_get_a_4xx_or_a_redirect_never_a_5xx(
    server: Server, query: dict[str, str]
) -> None:
    params = {"client_id": server.client_id, **query}
    answer = await server.client.get("/oauth/authorize", params=params)
    assert answer.status_code in (200, 303, 400), answer.text


@pytest.mark.parametrize("body", ODD_TOKEN_BODIES)
async def test_odd_token_requests_get_an_rfc_6749_error_never_a_5xx(server: Server, body: object) -> None:
    answer = await server.client.post("/oauth/token", json=body, auth=(server.client_id, server.secret))
    assert 400 <= answer.status_code < 500 and "error" in answer.json()


async def test_odd_sign_in_submissions_never_get_a_5xx(tmp_path: Path, postgres_url: str) -> None:
    # PostgreSQL enforces column lengths that SQLite ignores, so oversized input is tried there.
    settings = TodoSettings(auth="oauth", data_dir=tmp_path, database_url=postgres_url, auth_failure_limit=100)
    async for s in start(settings):
        request_id = request_id_of((await open_sign_in(s.client, s.client_id)).text)
        for form in (
            {"request_id": request_id, "username": "u" * 5000, "password": "p" * 100000},
            {"request_id": "\u00e9" * 300, "username": "alice", "password": PASSWORD},
            {"request_id": request_id, "username": "\u0000", "password": "\u0000"},
            {},
        ):
            answer = await s.client.post("/oauth/authorize", data=form)
            assert answer.status_code in (400, 429), answer.text
        params = {
            "grant_type": "authorization_code",
            "client_id": "c" * 5000,
            "client_secret": "x",
            "code": "y",
            "redirect_uri": HOST_CALLBACK,
        }
        assert (await exchange(s.client, params)).status_code == 401


async def test_an_expired_sign_in_form_cannot_be_submitted(server: Server) -> None:
    page = await open_sign_in(server.client, server.client_id)
    async with server.app.state.database.write() as session:
        await session.execute(update(tables.oauth_requests).values(expires_at=utcnow() - timedelta(seconds=1)))
    form = {"request_id": request_id_of(page.text), "username": "alice", "password": PASSWORD, "decision": "allow"}
    answer = await server.client.post("/oauth/authorize", data=form)
    assert answer.status_code == 400 and "expired" in answer.text


async def test_an_expired_refresh_token_is_invalid_grant(server: Server) -> None:
    tokens = await tokens_for(server)
    async with server.app.state.database.write() as session:
        await session.execute(update(tables.oauth_tokens).values(refresh_expires_at=utcnow() - timedelta(seconds=1)))
    params = {
        "grant_type": "refresh_token",
        "client_id": server.client_id,
        "client_secret": server.secret,
        "refresh_token": tokens["refresh_token"],
    }
    answer = await exchange(server.client, params)
    assert answer.json() == {"error": "invalid_grant", "error_description": "the refresh token has expired"}


async def test_long_expired_sign_ins_codes_and_tokens_are_pruned(server: Server) -> None:
    await tokens_for(server)
    long_ago = utcnow() - timedelta(days=40)
    async with server.app.state.database.write() as session:
        await session.execute(update(tables.oauth_requests).values(expires_at=long_ago))
        await session.execute(update(tables.oauth_codes).values(expires_at=long_ago))
        await session.execute(update(tables.oauth_tokens).values(refresh_expires_at=long_ago))
    await open_sign_in(server.client, server.client_id)  # each new sign-in prunes
    async with server.app.state.database.connect() as conn:
        counts = [
            len((await conn.execute(t.select())).all())
            for t in (tables.oauth_requests, tables.oauth_codes, tables.oauth_tokens)
        ]
    assert counts == [1, 0, 0]
