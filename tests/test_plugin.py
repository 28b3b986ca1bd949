"""The public Plugin API, on the README's 25-line TODO example: every auth method, MCP, spec, manifest, limits,
errors and CORS, with nothing wired by the plugin itself."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from fastapi import FastAPI

from plugkit import Plugin, PluginSettings
from plugkit.auth.bearer import UserTokenStore
from plugkit.auth.clients import ClientStore
from plugkit.auth.users import UserStore
from plugkit.manifest import has_errors, validate_manifest
from plugkit.mcp import mount_mcp
from plugkit.settings import AuthKind
from plugkit.spec import lint_spec
from tests.auth.conformance import SERVICE_TOKEN
from tests.auth.oauth_flow import PASSWORD, code_grant, sign_in
from tests.helpers import REPO_ROOT, asgi_client
from tests.test_mcp import mcp_client, text_of

EXAMPLE = REPO_ROOT / "examples" / "todo_plugin.py"


def load_example() -> ModuleType:
    """A fresh copy of the example module (its todos live in a module global)."""
    spec = importlib.util.spec_from_file_location("todo_plugin_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def example_plugin() -> Plugin:
    plugin = load_example().plugin
    assert isinstance(plugin, Plugin)
    return plugin


def test_the_example_is_at_most_25_lines_and_is_the_readmes_build_your_own_plugin_example() -> None:
    source = EXAMPLE.read_text(encoding="utf-8")
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Build your own plugin", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(source.splitlines()) <= 25
    assert blocks and blocks[0] == source


@asynccontextmanager
async def credential_for(kind: AuthKind, app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[dict[str, str]]:
    """The Authorization header a host would send under `kind`, obtained as an operator and a user would."""
    plugin: Plugin = app.state.plugin
    database = plugin.open_database(app.state.settings)
    try:
        if kind == "none":
            yield {}
        elif kind == "service_http":
            yield {"Authorization": f"Bearer {SERVICE_TOKEN}"}
        elif kind == "user_http":
            _, token = await UserTokenStore(database).create("alice")
            yield {"Authorization": f"Bearer {token}"}
        else:
            await UserStore(database).set_password("alice", PASSWORD)
            client_id, secret = await ClientStore(database).create()
            code = (await sign_in(client, client_id))["code"]
            token = (await code_grant(client, client_id, secret, code)).json()["access_token"]
            yield {"Authorization": f"Bearer {token}"}
    finally:
        await database.dispose()


@pytest.mark.parametrize("kind", ["none", "service_http", "user_http", "oauth"])
async def test_the_example_runs_unchanged_under_each_auth_method(tmp_path: Path, kind: AuthKind) -> None:
    plugin = example_plugin()
    token = {"service_token": SERVICE_TOKEN} if kind == "service_http" else {}
    settings = plugin.load_settings(auth=kind, data_dir=tmp_path, **token)
    app = plugin.create_app(settings)
    async with asgi_client(app, base_url="https://todo.example.com") as client:
        async with credential_for(kind, app, client) as headers:
            added = await client.post("/todos/alice", json={"todo": "buy milk"}, headers=headers)
            listed = await client.get("/todos/alice", headers=headers)
            deleted = await client.request("DELETE", "/todos/alice", json={"todo_idx": 0}, headers=headers)
            emptied = await client.get("/todos/alice", headers=headers)
        anonymous = await client.get("/todos/alice")
        manifest = (await client.get("/.well-known/ai-plugin.json")).json()
        spec = (await client.get("/openapi.json")).json()
    assert added.status_code == 200, added.text
    assert listed.json() == ["buy milk"] and deleted.json() == "buy milk" and emptied.json() == []
    assert anonymous.status_code == (200 if kind == "none" else 401)
    assert manifest["auth"]["type"] == kind
    assert not has_errors(validate_manifest(manifest, "strict"))
    assert [p for p in lint_spec(spec) if p.level == "error"] == []


async def test_the_manifest_urls_point_at_the_routes_the_toolkit_serves(tmp_path: Path) -> None:
    plugin = example_plugin()
    async with asgi_client(plugin.create_app(plugin.load_settings(data_dir=tmp_path))) as client:
        manifest = (await client.get("/.well-known/ai-plugin.json")).json()
        answers = [
            await client.get(manifest[key].removeprefix("http://testserver")) for key in ("logo_url", "legal_info_url")
        ]
        spec = await client.get(manifest["api"]["url"].removeprefix("http://testserver"))
    assert manifest["name_for_human"] == "TODO List" and manifest["name_for_model"] == "todolist"
    assert manifest["description_for_model"] == manifest["description_for_human"]
    assert [a.status_code for a in answers] == [200, 200] and answers[0].headers["content-type"] == "image/png"
    assert spec.status_code == 200 and "/todos/{username}" in spec.text


async def test_the_example_gets_the_toolkits_errors_limits_and_cors(tmp_path: Path) -> None:
    plugin = example_plugin()
    async with asgi_client(plugin.create_app(plugin.load_settings(data_dir=tmp_path))) as client:
        out_of_range = await client.request("DELETE", "/todos/bob", json={"todo_idx": 3})
        missing_field = await client.post("/todos/bob", json={"task": "x"})
        too_big = await client.post("/todos/bob", json={"todo": "x" * 1_100_000})
        preflight = await client.options(
            "/todos/bob",
            headers={
                "Origin": "https://chatgpt.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Private-Network": "true",
            },
        )
    assert out_of_range.status_code == 404 and out_of_range.json() == {"detail": "'bob' has no todo at index 3"}
    assert missing_field.status_code == 422 and "todo" in missing_field.text
    assert too_big.status_code == 413
    assert preflight.headers["access-control-allow-origin"] == "https://chatgpt.com"
    assert preflight.headers["access-control-allow-private-network"] == "true"


async def test_the_example_is_an_mcp_server_with_its_operations_as_tools(tmp_path: Path) -> None:
    plugin = example_plugin()
    app = mount_mcp(plugin.create_app(plugin.load_settings(data_dir=tmp_path)))
    async with app.router.lifespan_context(app), mcp_client(app) as client:
        names = sorted(t.name for t in (await client.list_tools()).tools)
        added = await client.call_tool("addTodo", {"username": "carol", "todo": "call mum"})
        listed = await client.call_tool("getTodos", {"username": "carol"})
    assert names == ["addTodo", "deleteTodo", "getTodos"]
    assert not added.is_error, text_of(added)
    assert "call mum" in text_of(listed)


async def test_a_plugin_without_tables_or_rate_counts_creates_no_database_file(tmp_path: Path) -> None:
    plugin = example_plugin()
    async with asgi_client(plugin.create_app(plugin.load_settings(data_dir=tmp_path, rate_limit_per_minute=0))) as c:
        assert (await c.post("/todos/dan", json={"todo": "x"})).status_code == 200
    assert list(tmp_path.glob("*.db")) == []


async def test_user_http_needs_no_table_hook_the_toolkit_creates_the_auth_tables(tmp_path: Path) -> None:
    plugin = example_plugin()
    app = plugin.create_app(plugin.load_settings(auth="user_http", data_dir=tmp_path, rate_limit_per_minute=0))
    async with asgi_client(app) as client:
        refused = await client.get("/todos/alice", headers={"Authorization": "Bearer not-a-token"})
    assert refused.status_code == 401
    assert (tmp_path / "todolist.db").exists()


def test_the_default_port_travels_with_the_plugins_settings_class(monkeypatch: pytest.MonkeyPatch) -> None:
    class WeatherSettings(PluginSettings):
        units: str = "metric"

    monkeypatch.delenv("PLUGKIT_PORT", raising=False)
    monkeypatch.setenv("PLUGKIT_UNITS", "imperial")
    plugin = Plugin("Weather", "The weather where you are.", settings=WeatherSettings, port=5077)
    settings = plugin.load_settings()
    assert isinstance(settings, WeatherSettings)
    assert (settings.port, settings.units) == (5077, "imperial")
    assert example_plugin().load_settings().port == 5004
    assert Plugin("Fun facts!", "x").model_name == "funfacts"


@pytest.mark.slow
async def test_plugins_sharing_one_postgresql_database_keep_their_auth_tables_apart(
    tmp_path: Path, postgres_url: str
) -> None:
    example = example_plugin()
    weather = Plugin("Weather", "The weather where you are.")

    @weather.get("/weather", operation_id="getWeather", summary="Get the weather")
    async def get_weather() -> dict[str, str]:
        return {"sky": "clear"}

    def app_of(plugin: Plugin) -> FastAPI:
        return plugin.create_app(plugin.load_settings(auth="user_http", data_dir=tmp_path, database_url=postgres_url))

    todo_app, weather_app = app_of(example), app_of(weather)
    async with asgi_client(todo_app) as todo, asgi_client(weather_app) as weather_client:
        database = example.open_database(todo_app.state.settings)
        try:
            _, token = await UserTokenStore(database).create("alice")
            schemas = await database.run_read(
                lambda conn: sorted(
                    row[0]
                    for row in conn.exec_driver_sql(
                        "SELECT table_schema FROM information_schema.tables WHERE table_name = 'auth_user_tokens'"
                    )
                )
            )
        finally:
            await database.dispose()
        headers = {"Authorization": f"Bearer {token}"}
        own = await todo.get("/todos/alice", headers=headers)
        other = await weather_client.get("/weather", headers=headers)
    assert own.status_code == 200
    assert other.status_code == 401  # the token was issued for the TODO plugin only
    assert {"todolist", "weather"} <= set(schemas)
