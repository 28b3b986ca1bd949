"""`plugkit tokens create|list|revoke` against the database the server uses."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from plugkit.cli import app
from plugkit.plugins.todo.app import create_app
from plugkit.plugins.todo.settings import TodoSettings
from tests.helpers import asgi_client

runner = CliRunner()


def tokens(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["tokens", *args])
    return result.exit_code, result.stdout, result.stderr


def status_with(tmp_path: Path, token: str, user: str = "alice") -> int:
    return asyncio.run(_status_with(tmp_path, token, user))


async def _status_with(tmp_path: Path, token: str, user: str) -> int:
    server = create_app(TodoSettings(auth="user_http", data_dir=tmp_path))
    async with asgi_client(server) as client:
        return (await client.get(f"/todos/{user}", headers={"Authorization": f"Bearer {token}"})).status_code


def test_create_prints_the_token_once_on_the_last_line_and_the_server_accepts_it(tmp_path: Path) -> None:
    code, out, _err = tokens("create", "--user", "alice", "--data-dir", str(tmp_path))
    assert code == 0
    token = out.strip().splitlines()[-1]
    assert token.startswith("pkt_") and out.count(token) == 1
    assert status_with(tmp_path, token) == 200


def test_create_with_json_prints_the_id_user_and_token(tmp_path: Path) -> None:
    code, out, _err = tokens("create", "--user", "bob", "--data-dir", str(tmp_path), "--json")
    assert code == 0
    created = json.loads(out)
    assert created["user"] == "bob" and created["id"] == 1
    assert status_with(tmp_path, created["token"], "bob") == 200


def test_list_shows_tokens_without_the_tokens_themselves(tmp_path: Path) -> None:
    _code, out, _err = tokens("create", "--user", "alice", "--label", "laptop", "--data-dir", str(tmp_path))
    token = out.strip().splitlines()[-1]
    code, listed, _err = tokens("list", "--data-dir", str(tmp_path), "--json")
    assert code == 0
    rows = json.loads(listed)
    assert [(r["id"], r["user"], r["label"]) for r in rows] == [(1, "alice", "laptop")]
    assert token not in listed
    _code, text, _err = tokens("list", "--data-dir", str(tmp_path))
    assert "alice" in text and "1 tokens" in text and token not in text
    assert text.splitlines()[0].split() == ["id", "user", "created_at", "fingerprint"]


def test_revoke_by_id_stops_the_token_working(tmp_path: Path) -> None:
    token = tokens("create", "--user", "alice", "--data-dir", str(tmp_path))[1].strip().splitlines()[-1]
    code, out, _err = tokens("revoke", "1", "--data-dir", str(tmp_path))
    assert code == 0 and "revoked 1 tokens" in out
    assert status_with(tmp_path, token) == 401
    assert tokens("revoke", "1", "--data-dir", str(tmp_path))[0] == 1
    assert json.loads(tokens("list", "--all", "--json", "--data-dir", str(tmp_path))[1])[0]["revoked_at"]


def test_revoke_by_user_revokes_all_their_tokens(tmp_path: Path) -> None:
    for _ in range(2):
        tokens("create", "--user", "alice", "--data-dir", str(tmp_path))
    tokens("create", "--user", "bob", "--data-dir", str(tmp_path))
    code, out, _err = tokens("revoke", "--user", "alice", "--data-dir", str(tmp_path))
    assert code == 0 and "revoked 2 tokens" in out
    assert [r["user"] for r in json.loads(tokens("list", "--json", "--data-dir", str(tmp_path))[1])] == ["bob"]


def test_revoke_without_an_id_or_user_is_a_usage_error(tmp_path: Path) -> None:
    code, _out, err = tokens("revoke", "--data-dir", str(tmp_path))
    assert code == 2 and "token id or --user" in err


def test_an_invalid_user_name_is_a_usage_error(tmp_path: Path) -> None:
    code, _out, err = tokens("create", "--user", "two words", "--data-dir", str(tmp_path))
    assert code == 2 and "user name" in err


def test_the_plugin_option_picks_that_plugins_database(tmp_path: Path) -> None:
    assert tokens("create", "--user", "alice", "--plugin", "sports", "--data-dir", str(tmp_path))[0] == 0
    assert (tmp_path / "sports_auth.db").exists() and not (tmp_path / "todo.db").exists()
    assert tokens("create", "--user", "alice", "--plugin", "nope", "--data-dir", str(tmp_path))[0] == 2


def test_a_token_created_for_the_sports_plugin_is_accepted_by_the_sports_server(tmp_path: Path) -> None:
    from plugkit.plugins.sports.app import create_app as create_sports_app
    from plugkit.plugins.sports.settings import SportsSettings

    out = tokens("create", "--user", "alice", "--plugin", "sports", "--data-dir", str(tmp_path))[1]
    token = out.strip().splitlines()[-1]

    async def run() -> tuple[int, int]:
        async with asgi_client(create_sports_app(SportsSettings(auth="user_http", data_dir=tmp_path))) as client:
            good = await client.get("/teams", headers={"Authorization": f"Bearer {token}"})
            bad = await client.get("/teams", headers={"Authorization": "Bearer pkt_other"})
            return good.status_code, bad.status_code

    assert asyncio.run(run()) == (200, 401)
