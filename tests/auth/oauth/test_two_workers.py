"""A real `plugkit serve todo --auth oauth --workers 2`: the whole flow across two processes, and what it logs."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.auth.oauth_flow import (
    HOST_CALLBACK,
    PASSWORD,
    code_grant,
    exchange,
    open_sign_in,
    query_of,
    register_with_cli,
    request_id_of,
)
from tests.helpers import PluginServer

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_the_whole_flow_runs_on_a_two_worker_server_and_logs_no_secret(tmp_path: Path, log_format: str) -> None:
    client_id, client_secret = register_with_cli(tmp_path)
    secrets: list[str] = [client_secret, PASSWORD]
    args = ("todo", "--auth", "oauth", "--workers", "2", "--data-dir", str(tmp_path))
    server = PluginServer(*args, env={"PLUGKIT_LOG_FORMAT": log_format})
    with server:
        base = server.base_url

        def fresh() -> httpx.AsyncClient:
            # A new connection per step, so the steps land on either worker.
            return httpx.AsyncClient(base_url=base, timeout=30)

        manifest = httpx.get(f"{base}/.well-known/ai-plugin.json").json()
        assert manifest["auth"]["client_url"] == f"{base}/oauth/authorize"
        assert manifest["auth"]["authorization_url"] == f"{base}/oauth/token"
        for round_ in range(3):
            async with fresh() as client:
                page = await open_sign_in(client, client_id, state=f"state-{round_}")
            request_id = request_id_of(page.text)
            async with fresh() as client:
                form = {"request_id": request_id, "username": "alice", "password": PASSWORD, "decision": "allow"}
                answer = await client.post("/oauth/authorize", data=form)
            assert answer.status_code == 303, answer.text
            query = query_of(answer.headers["location"])
            assert query["state"] == f"state-{round_}"
            async with fresh() as client:
                tokens = await code_grant(client, client_id, client_secret, query["code"])
            assert tokens.status_code == 200, tokens.text
            body = tokens.json()
            secrets += [request_id, query["code"], body["access_token"], body["refresh_token"]]
            async with fresh() as client:
                added = await client.post(
                    "/todos/alice",
                    json={"todo": f"task {round_}"},
                    headers={"Authorization": f"Bearer {body['access_token']}"},
                )
                assert added.status_code == 200
            async with fresh() as client:
                reused = await code_grant(client, client_id, client_secret, query["code"])
            assert reused.json()["error"] == "invalid_grant"
            async with fresh() as client:
                revoked = await client.get("/todos/alice", headers={"Authorization": f"Bearer {body['access_token']}"})
            assert revoked.status_code == 401
        async with fresh() as client:
            query = query_of(
                (
                    await client.post(
                        "/oauth/authorize",
                        data={
                            "request_id": request_id_of((await open_sign_in(client, client_id)).text),
                            "username": "alice",
                            "password": PASSWORD,
                        },
                    )
                ).headers["location"]
            )
            first = (await code_grant(client, client_id, client_secret, query["code"], HOST_CALLBACK)).json()
        refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
        async with fresh() as client:
            rotated = await exchange(
                client, refresh, "application/x-www-form-urlencoded", basic=(client_id, client_secret)
            )
        assert rotated.status_code == 200, rotated.text
        secrets += [query["code"], first["access_token"], first["refresh_token"], rotated.json()["access_token"]]
        async with fresh() as client:
            listed = await client.get(
                "/todos/alice", headers={"Authorization": f"Bearer {rotated.json()['access_token']}"}
            )
        assert listed.json()["todos"] == ["task 0", "task 1", "task 2"]
        async with fresh() as client:
            wrong = await client.get("/todos/alice", headers={"Authorization": f"Bearer {first['refresh_token']}"})
        assert wrong.status_code == 401
    output = server.output()
    assert "POST /oauth/token" in output  # the access log is on, so the check below reads real log lines
    if log_format == "json":
        logged = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        assert any(r.get("path") == "/oauth/token" and r["status"] == 200 for r in logged)
    leaked = [s[:8] + "..." for s in secrets if s in output]
    assert not leaked, f"secrets in the server log: {leaked}"
