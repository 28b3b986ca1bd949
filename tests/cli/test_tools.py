"""`plugkit tools`: the tool definitions a model gets, in OpenAI, MCP and TypeScript form."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from plugkit.cli import app
from tests.cli.test_check import plugin_files
from tests.host.support import GOOD_OP, spec_with

runner = CliRunner()

SPEC = spec_with(
    {
        "/thing": GOOD_OP,
        "/things/{name}": {
            "post": {
                "operationId": "addThing",
                "description": "Add a thing.",
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/T"}}}},
            }
        },
    },
    components={"schemas": {"T": {"type": "object", "properties": {"size": {"type": "integer"}}}}},
)


def test_openai_format_prints_function_schemas_with_refs_resolved(tmp_path: Path) -> None:
    result = runner.invoke(app, ["tools", *plugin_files(tmp_path, SPEC)])
    assert result.exit_code == 0, result.output
    tools = json.loads(result.stdout)
    assert [t["function"]["name"] for t in tools] == ["getThing", "addThing"]
    assert tools[1]["function"]["parameters"]["properties"] == {"name": {"type": "string"}, "size": {"type": "integer"}}


def test_mcp_format_prints_a_tools_list(tmp_path: Path) -> None:
    result = runner.invoke(app, ["tools", *plugin_files(tmp_path, SPEC), "--format", "mcp"])
    assert result.exit_code == 0, result.output
    [get, add] = json.loads(result.stdout)["tools"]
    assert get["name"] == "getThing" and get["annotations"]["readOnlyHint"] is True
    assert add["inputSchema"]["required"] == ["name"]


def test_typescript_format_prints_the_namespace_prompt(tmp_path: Path) -> None:
    result = runner.invoke(app, ["tools", *plugin_files(tmp_path, SPEC), "-f", "typescript"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("// An example plugin.\nnamespace example {\n")
    assert "// Add a thing.\ntype addThing = (_: {\nname: string,\nsize?: number,\n}) => any;" in result.stdout


def test_a_spec_file_alone_is_enough(tmp_path: Path) -> None:
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    result = runner.invoke(app, ["tools", str(tmp_path / "spec.json"), "-f", "typescript"])
    assert result.exit_code == 0 and "namespace Example {" in result.stdout


def test_an_unknown_format_is_bad_usage_and_a_missing_spec_exits_1(tmp_path: Path) -> None:
    assert runner.invoke(app, ["tools", *plugin_files(tmp_path, SPEC), "-f", "xml"]).exit_code == 2
    result = runner.invoke(app, ["tools", str(tmp_path / "absent.json")])
    assert result.exit_code == 1 and "cannot read the manifest" in result.output
