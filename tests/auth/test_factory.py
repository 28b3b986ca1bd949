"""Every auth method protects every operation of the TODO plugin's generated spec; bad configuration stops startup."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugkit.auth.factory import AuthConfigError, build_auth_method, check_auth_settings
from plugkit.manifest import has_errors, validate_manifest
from plugkit.plugins.todo.app import create_app
from plugkit.plugins.todo.settings import TodoSettings
from plugkit.settings import PluginSettings
from plugkit.spec import lint_spec
from plugkit.storage import Database
from tests.auth.conformance import check_every_operation_requires_auth
from tests.helpers import asgi_client


@pytest.mark.parametrize(
    ("kind", "scheme"),
    [
        ("service_http", "bearer"),
        ("service_http", "basic"),
        ("user_http", "bearer"),
        ("user_http", "basic"),
        ("oauth", "bearer"),
    ],
)
async def test_every_todo_operation_rejects_bad_credentials_and_accepts_a_valid_one(
    tmp_path: Path, kind: str, scheme: str
) -> None:
    outcomes = await check_every_operation_requires_auth(create_app, TodoSettings, tmp_path, kind, scheme)  # type: ignore[arg-type]
    assert {o.operation_id for o in outcomes} >= {"addTodo", "getTodos", "deleteTodo", "deleteTodoById"}


async def test_adding_under_a_valid_credential_reaches_the_route(tmp_path: Path) -> None:
    outcomes = await check_every_operation_requires_auth(create_app, TodoSettings, tmp_path, "user_http")
    add = next(o for o in outcomes if o.operation_id == "addTodo")
    assert add.statuses["valid"] == 200


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        (None, "needs a token"),
        ("short-token-123", "shorter than 16"),
        ("changeme-changeme-changeme", "placeholder"),
        ("your-token-goes-here-please", "placeholder"),
        ("aaaaaaaaaaaaaaaaaaaaaaaa", "placeholder"),
        ("a token with spaces in it!", "characters"),
    ],
)
def test_service_http_refuses_a_missing_short_or_placeholder_token(
    tmp_path: Path, token: str | None, problem: str
) -> None:
    settings = PluginSettings(auth="service_http", service_token=token, data_dir=tmp_path)
    with pytest.raises(AuthConfigError, match=problem):
        check_auth_settings(settings)
    with pytest.raises(AuthConfigError, match=problem):
        build_auth_method(settings, Database(f"sqlite:///{tmp_path / 'x.db'}"))


def test_service_http_reads_the_token_from_a_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("svc_5fH2kL9mQ3rT8wX1\n")
    settings = PluginSettings(auth="service_http", service_token_file=token_file, data_dir=tmp_path)
    method = build_auth_method(settings, Database(f"sqlite:///{tmp_path / 'x.db'}"))
    assert method.kind == "service_http"


def test_service_http_names_an_unreadable_token_file(tmp_path: Path) -> None:
    settings = PluginSettings(auth="service_http", service_token_file=tmp_path / "absent", data_dir=tmp_path)
    with pytest.raises(AuthConfigError, match="cannot read the service token file"):
        check_auth_settings(settings)


@pytest.mark.parametrize("kind", ["none", "service_http", "user_http", "oauth"])
async def test_each_methods_manifest_passes_strict_validation(tmp_path: Path, kind: str) -> None:
    extra = {"service_token": "svc_9Qm2vT7xLp4Rk8Zs1Wd6Yh3Nc5Bf0Ja"} if kind == "service_http" else {}
    app = create_app(TodoSettings(auth=kind, data_dir=tmp_path, **extra))  # type: ignore[arg-type]
    async with asgi_client(app, base_url="https://todo.example.com") as client:
        manifest = (await client.get("/.well-known/ai-plugin.json")).json()
        spec = (await client.get("/openapi.json")).json()
    assert manifest["auth"]["type"] == kind
    assert not has_errors(validate_manifest(manifest, "strict"))
    assert [p for p in lint_spec(spec) if p.level == "error"] == []


@pytest.mark.parametrize("kind", ["service_http", "user_http", "oauth"])
async def test_every_sports_operation_rejects_bad_credentials_and_accepts_a_valid_one(
    tmp_path: Path, kind: str
) -> None:
    from plugkit.plugins.sports.app import create_app as create_sports_app
    from plugkit.plugins.sports.settings import SportsSettings

    outcomes = await check_every_operation_requires_auth(create_sports_app, SportsSettings, tmp_path, kind)  # type: ignore[arg-type]
    assert {o.operation_id for o in outcomes} >= {"getPlayers", "getTeams", "getGames", "getStats"}


def test_the_placeholder_refusal_suggests_a_command_that_prints_an_accepted_token(tmp_path: Path) -> None:
    """The hint used to be `python -m secrets`, which prints nothing."""
    import shlex
    import subprocess
    import sys

    with pytest.raises(AuthConfigError) as refused:
        check_auth_settings(PluginSettings(auth="service_http", service_token="changeme-changeme-changeme"))
    command = shlex.split(str(refused.value).split("generate one: ", 1)[1])
    assert command[0] == "python"
    printed = subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True, check=True).stdout.strip()
    check_auth_settings(PluginSettings(auth="service_http", service_token=printed, data_dir=tmp_path))
