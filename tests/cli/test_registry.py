"""The plugin registry: built-ins, the `plugkit.plugins` entry-point group and `module:attribute` references, as
every command that takes a plugin finds them; an unknown name is a usage error that lists what exists."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client
from typer.testing import CliRunner

from plugkit.cli import app, registry
from tests.helpers import REPO_ROOT, PluginServer, asgi_client

runner = CliRunner()
EXAMPLE_REF = "examples.todo_plugin:plugin"


@pytest.fixture
def installed_weather(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A distribution on sys.path whose metadata names a plugin in the entry-point group, as pip installs one."""
    site = tmp_path / "site"
    (site / "weather_plugin").mkdir(parents=True)
    (site / "weather_plugin" / "__init__.py").write_text(
        "from typing import Literal\n\n"
        "from pydantic import Field\n\n"
        "from plugkit import Plugin, PluginSettings\n\n\n"
        "class WeatherSettings(PluginSettings):\n"
        "    units: Literal['metric', 'imperial'] = Field(default='metric', description='how to measure')\n\n\n"
        "plugin = Plugin(\n"
        "    'Weather', 'The weather where you are.', settings=WeatherSettings, port=5077, options={'units': 'units'}\n"
        ")\n\n\n"
        "@plugin.get('/weather', operation_id='getWeather', summary='Get the weather')\n"
        "async def weather() -> dict[str, str]:\n"
        "    return {'sky': 'clear'}\n",
        encoding="utf-8",
    )
    dist = site / "weather_plugin-0.3.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: weather-plugin\nVersion: 0.3.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text("[plugkit.plugins]\nweather = weather_plugin:plugin\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    return "weather"


def test_plugins_lists_the_built_ins_and_what_other_packages_install(installed_weather: str) -> None:
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert {"todo", "sports", "retrieval", installed_weather} <= set(rows)
    assert rows["todo"]["origin"] == "built-in" and rows["todo"]["port"] == 5002
    assert rows["weather"]["origin"] == "weather-plugin 0.3.0" and rows["weather"]["port"] == 5077


@pytest.mark.parametrize(
    "command",
    [
        ["serve", "nosuch"],
        ["mcp", "nosuch"],
        ["tokens", "create", "--user", "alice", "--plugin", "nosuch"],
        ["users", "list", "--plugin", "nosuch"],
        ["oauth-clients", "list", "--plugin", "nosuch"],
        ["check", "nosuch:plugin"],
    ],
)
def test_an_unknown_plugin_is_a_usage_error_naming_what_exists(command: list[str], tmp_path: Path) -> None:
    result = runner.invoke(app, [*command])
    assert result.exit_code == 2, result.output
    assert "nosuch" in result.stderr
    if ":" not in command[-1]:
        assert "installed: retrieval, sports, todo" in result.stderr


def test_serve_takes_the_plugins_own_options_typed_and_described_by_its_settings(installed_weather: str) -> None:
    result = runner.invoke(app, ["serve", installed_weather, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "--units" in result.stdout and "metric | imperial: how to measure (PLUGKIT_UNITS)" in result.stdout
    assert "(default port 5077)" in result.stdout


def test_a_reference_that_is_not_a_plugin_says_what_it_found() -> None:
    with pytest.raises(registry.UnknownPlugin, match="is not a plugkit.Plugin"):
        registry.load("plugkit.plugins.todo.app:router")


def test_tokens_for_an_installed_plugin_are_accepted_by_its_server(installed_weather: str, tmp_path: Path) -> None:
    created = runner.invoke(
        app, ["tokens", "create", "--user", "ann", "--plugin", "weather", "--data-dir", str(tmp_path)]
    )
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]

    async def call(headers: dict[str, str]) -> int:
        plugin = registry.load("weather")
        server = plugin.create_app(plugin.load_settings(auth="user_http", data_dir=tmp_path))
        async with asgi_client(server) as client:
            return (await client.get("/weather", headers=headers)).status_code

    assert asyncio.run(call({"Authorization": f"Bearer {token}"})) == 200
    assert asyncio.run(call({"Authorization": "Bearer pkt_wrong"})) == 401


def test_users_and_oauth_clients_take_a_module_attribute_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    user = runner.invoke(
        app,
        ["users", "create", "bob", "--password-stdin", "--plugin", EXAMPLE_REF, "--data-dir", str(tmp_path)],
        input="a long enough password\n",
    )
    client = runner.invoke(
        app, ["oauth-clients", "create", "--json", "--plugin", EXAMPLE_REF, "--data-dir", str(tmp_path)]
    )
    listed = runner.invoke(app, ["users", "list", "--plugin", EXAMPLE_REF, "--data-dir", str(tmp_path)])
    assert user.exit_code == 0 and client.exit_code == 0, user.output + client.output
    assert "bob" in listed.stdout
    assert json.loads(client.stdout)["client_id"]
    assert (tmp_path / "todolist.db").exists()  # the example's own database, as `serve` opens it


def test_serve_check_and_mcp_reach_a_plugin_by_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with PluginServer(EXAMPLE_REF, "--mcp", "--data-dir", str(tmp_path)) as server:
        added = httpx.post(f"{server.base_url}/todos/eve", json={"todo": "write tests"})

        async def tool_names() -> list[str]:
            async with Client(f"{server.base_url}/mcp") as client:
                return sorted(t.name for t in (await client.list_tools()).tools)

        names = anyio.run(tool_names)
        monkeypatch.setenv("PLUGKIT_PORT", str(server.port))  # check finds it where its settings say it listens
        checked = runner.invoke(app, ["check", EXAMPLE_REF, "--strict"])
    assert added.status_code == 200
    assert names == ["addTodo", "deleteTodo", "getTodos"]
    assert checked.exit_code == 0, checked.output
    assert f"manifest: {server.base_url}/.well-known/ai-plugin.json" in checked.stdout


def test_a_plugins_own_option_reaches_its_setting_and_a_bad_value_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLUGKIT_SPORTS_BACKEND", "local")  # serve exports its options; this restores the variable
    result = runner.invoke(app, ["serve", "sports", "--backend", "nope"])
    assert result.exit_code == 2
    assert "invalid settings for sports" in result.stderr and "sports_backend" in result.stderr
