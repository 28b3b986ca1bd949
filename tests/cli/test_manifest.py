from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

from typer.testing import CliRunner

from plugkit.cli import app
from tests.helpers import PluginServer
from tests.test_manifest import good_manifest

runner = CliRunner()


def write(tmp_path: Path, data: dict[str, object]) -> str:
    path = tmp_path / "ai-plugin.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_validate_a_good_manifest_exits_0(tmp_path: Path) -> None:
    result = runner.invoke(app, ["manifest", "validate", write(tmp_path, good_manifest()), "--strict"])
    assert result.exit_code == 0, result.output
    assert "0 errors, 0 warnings" in result.output


def test_validate_prints_each_problem_and_exits_1_on_errors(tmp_path: Path) -> None:
    source = write(tmp_path, good_manifest(name_for_human="A name that is far too long for strict"))
    assert runner.invoke(app, ["manifest", "validate", source]).exit_code == 0
    result = runner.invoke(app, ["manifest", "validate", source, "--strict"])
    assert result.exit_code == 1
    assert "error: name_for_human: is 38 characters, over the strict limit of 20" in result.output


def test_validate_json_output_lists_problems(tmp_path: Path) -> None:
    source = write(tmp_path, good_manifest(extra_field=1))
    result = runner.invoke(app, ["manifest", "validate", source, "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output) == [
        {"level": "warning", "field": "extra_field", "message": "is not a manifest field; kept, but hosts ignore it"}
    ]


def test_validate_a_file_that_is_not_json_exits_1_with_the_cause(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{nope")
    result = runner.invoke(app, ["manifest", "validate", str(path)])
    assert result.exit_code == 1 and "not valid JSON" in result.output


def test_validate_takes_a_plugins_base_url_as_check_does(tmp_path: Path) -> None:
    with PluginServer("todo", "--data-dir", str(tmp_path)) as server:
        for source in (server.base_url, server.base_url + "/"):
            result = runner.invoke(app, ["manifest", "validate", source])
            assert result.exit_code == 0, result.output
            assert "0 errors" in result.output


def test_version_prints_the_installed_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"plugkit {version('plugkit')}"
