"""`plugkit check`: a report of every problem, exit 1 on errors, JSON for machines; URLs and local files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from plugkit.cli import app
from tests.helpers import PluginServer, free_port
from tests.host.support import GOOD_OP, MANIFEST, spec_with

runner = CliRunner()


@pytest.fixture(scope="module")
def todo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PluginServer]:
    with PluginServer("todo", "--data-dir", str(tmp_path_factory.mktemp("todo"))) as server:
        yield server


def plugin_files(folder: Path, spec: dict[str, object], manifest: dict[str, object] | None = None) -> list[str]:
    """A manifest file as it will be published, and `--spec` naming its spec in a local file."""
    (folder / "ai-plugin.json").write_text(json.dumps(manifest or MANIFEST))
    (folder / "openapi.yaml").write_text(yaml.safe_dump(spec))
    return [str(folder / "ai-plugin.json"), "--spec", str(folder / "openapi.yaml")]


@pytest.mark.parametrize("strict", [False, True])
def test_the_running_todo_plugin_checks_clean_in_both_modes(todo_server: PluginServer, strict: bool) -> None:
    result = runner.invoke(app, ["check", todo_server.base_url, *(["--strict"] if strict else [])])
    assert result.exit_code == 0, result.output
    assert f"manifest: {todo_server.base_url}/.well-known/ai-plugin.json" in result.output
    assert "0 errors, 0 warnings" in result.output


def test_json_output_lists_the_problems_and_exit_1_on_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", *plugin_files(tmp_path, spec_with({"/thing": {"get": {}}})), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["errors"] == 1 and report["mode"] == "default"
    assert report["problems"] == [
        {"level": "error", "field": "spec.paths./thing.get", "message": "has no operationId; the host skips it"}
    ]


def test_a_clean_local_plugin_exits_0_and_warnings_alone_do_not_fail(tmp_path: Path) -> None:
    manifest = {**MANIFEST, "endpoints": []}
    result = runner.invoke(app, ["check", *plugin_files(tmp_path, spec_with({"/thing": GOOD_OP}), manifest)])
    assert result.exit_code == 0, result.output
    assert "warning: manifest.endpoints: is not a manifest field" in result.output
    assert "0 errors, 1 warnings" in result.output


def test_an_unreachable_plugin_exits_1_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["check", url])
    assert result.exit_code == 1
    assert f"cannot fetch the manifest at {url}/.well-known/ai-plugin.json" in result.output
