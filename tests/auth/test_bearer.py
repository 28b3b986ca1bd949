"""service_http and user_http: manifests, challenges, per-user access, revocation, and real servers."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from plugkit.auth import tables
from plugkit.plugins.todo.app import create_app
from plugkit.plugins.todo.settings import TodoSettings
from tests.auth.conformance import SERVICE_TOKEN
from tests.auth.oauth_flow import run_plugkit
from tests.helpers import REPO_ROOT, PluginServer, asgi_client


def basic(password: str, user: str = "anyone") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
async def user_http(tmp_path: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(TodoSettings(auth="user_http", data_dir=tmp_path))
    async with asgi_client(app) as client:
        yield app, client


async def test_service_http_publishes_its_verification_tokens_and_scheme(tmp_path: Path) -> None:
    settings = TodoSettings(
        auth="service_http",
        service_token=SERVICE_TOKEN,
        verification_tokens={"openai": "verify-abc123"},
        auth_scheme="basic",
        data_dir=tmp_path,
    )
    async with asgi_client(create_app(settings)) as client:
        manifest = (await client.get("/.well-known/ai-plugin.json")).json()
        spec = (await client.get("/openapi.json")).json()
        refused = await client.get("/todos/global")
    assert manifest["auth"] == {
        "type": "service_http",
        "authorization_type": "basic",
        "verification_tokens": {"openai": "verify-abc123"},
    }
    assert spec["components"]["securitySchemes"]["plugkit"] == {"type": "http", "scheme": "basic"}
    assert refused.headers["www-authenticate"] == 'Basic realm="plugkit"'


async def test_a_service_principal_reaches_every_users_list_as_in_the_example(tmp_path: Path) -> None:
    settings = TodoSettings(auth="service_http", service_token=SERVICE_TOKEN, data_dir=tmp_path)
    headers = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    async with asgi_client(create_app(settings)) as client:
        assert (await client.post("/todos/bob", json={"todo": "x"}, headers=headers)).status_code == 200
        assert (await client.get("/todos/alice", headers=headers)).status_code == 200
        assert (await client.get("/todos/bob", headers=headers)).json()["todos"] == ["x"]


async def test_a_wrong_service_token_is_401_with_an_invalid_token_challenge(tmp_path: Path) -> None:
    settings = TodoSettings(auth="service_http", service_token=SERVICE_TOKEN, data_dir=tmp_path)
    async with asgi_client(create_app(settings)) as client:
        answer = await client.get("/todos/global", headers={"Authorization": f"Bearer {SERVICE_TOKEN}x"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="plugkit", error="invalid_token"'
    assert answer.json() == {"detail": "invalid credentials"}


async def test_user_http_manifest_names_the_scheme(user_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _app, client = user_http
    manifest = (await client.get("/.well-known/ai-plugin.json")).json()
    assert manifest["auth"] == {"type": "user_http", "authorization_type": "bearer"}


async def test_a_user_token_reaches_only_its_own_list(user_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = user_http
    _id, token = await app.state.auth.tokens.create("alice")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.post("/todos/alice", json={"todo": "mine"}, headers=headers)).status_code == 200
    other = await client.get("/todos/bob", headers=headers)
    assert other.status_code == 403
    assert other.json()["detail"] == "you are signed in as 'alice' and cannot reach the todos of 'bob'"


async def test_a_revoked_user_token_gets_401(user_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = user_http
    token_id, token = await app.state.auth.tokens.create("alice")
    _other_id, other = await app.state.auth.tokens.create("alice")
    assert await app.state.auth.tokens.revoke(token_id=token_id) == 1
    assert (await client.get("/todos/alice", headers={"Authorization": f"Bearer {token}"})).status_code == 401
    assert (await client.get("/todos/alice", headers={"Authorization": f"Bearer {other}"})).status_code == 200
    assert await app.state.auth.tokens.revoke(user_id="alice") == 1
    assert (await client.get("/todos/alice", headers={"Authorization": f"Bearer {other}"})).status_code == 401


async def test_user_tokens_work_as_the_password_of_basic_credentials(tmp_path: Path) -> None:
    app = create_app(TodoSettings(auth="user_http", auth_scheme="basic", data_dir=tmp_path))
    async with asgi_client(app) as client:
        _id, token = await app.state.auth.tokens.create("alice")
        assert (await client.get("/todos/alice", headers=basic(token, "alice"))).status_code == 200
        bearer = await client.get("/todos/alice", headers={"Authorization": f"Bearer {token}"})
        assert bearer.status_code == 401 and bearer.headers["www-authenticate"].startswith("Basic")


async def test_only_the_hash_of_a_user_token_is_stored(user_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, _client = user_http
    _id, token = await app.state.auth.tokens.create("alice", label="laptop")
    async with app.state.database.connect() as conn:
        rows = (await conn.execute(tables.user_tokens.select())).all()
    assert len(rows) == 1 and token not in str(rows[0])
    listed = await app.state.auth.tokens.list("alice")
    assert [(t.user_id, t.label) for t in listed] == [("alice", "laptop")]


async def test_a_token_for_an_invalid_user_name_is_refused(user_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, _client = user_http
    with pytest.raises(ValueError, match="user name"):
        await app.state.auth.tokens.create("no spaces allowed")


@pytest.mark.slow
def test_the_server_refuses_to_start_with_a_placeholder_service_token(tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(REPO_ROOT / "src"), "PLUGKIT_SERVICE_TOKEN": "changeme-changeme-changeme", "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-m", "plugkit", "serve", "todo", "--auth", "service_http", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert "placeholder" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_real_user_http_server_accepts_a_cli_token_and_never_logs_it(tmp_path: Path, log_format: str) -> None:
    token = run_plugkit("tokens", "create", "--user", "alice", "--data-dir", str(tmp_path)).stdout.splitlines()[-1]
    env = {"PLUGKIT_LOG_FORMAT": log_format}
    with PluginServer("todo", "--auth", "user_http", "--data-dir", str(tmp_path), env=env) as server:
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.post(f"{server.base_url}/todos/alice", json={"todo": "a"}, headers=headers).status_code == 200
        assert (
            httpx.get(f"{server.base_url}/todos/alice", headers={"Authorization": "Bearer pkt_wrong"}).status_code
            == 401
        )
    output = server.output()
    assert "GET /todos/alice" in output
    assert token not in output
    if log_format == "json":
        logged = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        assert {(r["path"], r["status"]) for r in logged if r["logger"] == "plugkit.request"} >= {
            ("/todos/alice", 200),
            ("/todos/alice", 401),
        }


@pytest.mark.slow
def test_a_real_service_http_server_reads_its_token_file_and_never_logs_it(tmp_path: Path) -> None:
    token_file = tmp_path / "service-token"
    token_file.write_text(SERVICE_TOKEN + "\n")
    args = ("todo", "--auth", "service_http", "--service-token-file", str(token_file), "--data-dir", str(tmp_path))
    with PluginServer(*args) as server:
        assert (
            httpx.get(f"{server.base_url}/todos/x", headers={"Authorization": f"Bearer {SERVICE_TOKEN}"}).status_code
            == 200
        )
        assert httpx.get(f"{server.base_url}/todos/x").status_code == 401
    output = server.output()
    assert "GET /todos/x" in output and SERVICE_TOKEN not in output


async def test_only_paths_and_methods_a_route_serves_ask_for_the_credential(tmp_path: Path) -> None:
    settings = TodoSettings(auth="service_http", service_token=SERVICE_TOKEN, data_dir=tmp_path)
    async with asgi_client(create_app(settings)) as client:
        assert (await client.get("/todos/alice")).status_code == 401
        assert (await client.post("/todos/alice", json={"todo": "x"})).status_code == 401
        assert (await client.delete("/todos/alice/1")).status_code == 401
        assert (await client.get("/no/such/path")).status_code == 404
        assert (await client.put("/todos/alice", json={"todo": "x"})).status_code == 405
        assert (await client.get("/.well-known/ai-plugin.json")).status_code == 200
