"""`plugkit oauth-clients create|list`: clients the server then accepts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from plugkit.auth.clients import DEFAULT_REDIRECT_URIS
from plugkit.cli import app
from plugkit.plugins.todo.app import create_app
from plugkit.plugins.todo.settings import TodoSettings
from tests.auth.oauth_flow import HOST_CALLBACK, PASSWORD, code_grant, open_sign_in, sign_in
from tests.helpers import asgi_client

runner = CliRunner()


def add_alice(tmp_path: Path) -> None:
    args = ["users", "create", "alice", "--password-stdin", "--data-dir", str(tmp_path)]
    assert runner.invoke(app, args, input=PASSWORD + "\n").exit_code == 0


def flow_status(tmp_path: Path, client_id: str, secret: str, redirect_uri: str = HOST_CALLBACK) -> int:
    """Run the flow against a server on the same data directory; the token endpoint's status."""

    async def run() -> int:
        async with asgi_client(create_app(TodoSettings(auth="oauth", data_dir=tmp_path))) as client:
            page = await open_sign_in(client, client_id, redirect_uri=redirect_uri)
            if page.status_code != 200:
                return page.status_code
            query = await sign_in(client, client_id, redirect_uri=redirect_uri)
            return (await code_grant(client, client_id, secret, query["code"], redirect_uri=redirect_uri)).status_code

    return asyncio.run(run())


def test_a_created_client_completes_the_flow_against_the_server(tmp_path: Path) -> None:
    result = runner.invoke(app, ["oauth-clients", "create", "--json", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created["redirect_uris"] == list(DEFAULT_REDIRECT_URIS)
    add_alice(tmp_path)
    assert flow_status(tmp_path, created["client_id"], created["client_secret"]) == 200


def test_a_client_with_its_own_redirect_uri_may_use_only_that_one(tmp_path: Path) -> None:
    callback = "http://127.0.0.1:8123/callback"
    args = ["oauth-clients", "create", "--redirect-uri", callback, "--name", "My host", "--data-dir", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    client_id, secret = lines[0].removeprefix("client_id: "), lines[-1]
    assert secret.startswith("pks_") and callback in result.stdout
    add_alice(tmp_path)
    assert flow_status(tmp_path, client_id, secret, redirect_uri=callback) == 200
    assert flow_status(tmp_path, client_id, secret, redirect_uri=HOST_CALLBACK) == 400


def test_an_invalid_redirect_uri_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["oauth-clients", "create", "--redirect-uri", "nonsense", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "redirect URI" in result.stderr


def test_list_shows_client_ids_and_redirect_uris_but_no_secret(tmp_path: Path) -> None:
    created = json.loads(runner.invoke(app, ["oauth-clients", "create", "--json", "--data-dir", str(tmp_path)]).stdout)
    listed = runner.invoke(app, ["oauth-clients", "list", "--data-dir", str(tmp_path)]).stdout
    assert created["client_id"] in listed and DEFAULT_REDIRECT_URIS[0] in listed
    assert created["client_secret"] not in listed
