from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from plugkit.cli import app

runner = CliRunner()


def _command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [path]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        paths += _command_paths(sub, (*path, name))
    return paths


COMMANDS = _command_paths(typer.main.get_command(app))


def test_the_commands_with_list_arguments_are_among_those_checked() -> None:
    assert {("ingest",), ("call",), ("oauth-clients", "create"), ("sports", "import")} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "plugkit")
def test_help_names_no_python_list_type(command: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "list[" not in result.output


def test_ingest_help_names_its_paths_argument() -> None:
    result = runner.invoke(app, ["ingest", "--help"], env={"COLUMNS": "200"})
    assert "{PATH}..." in result.output and "Files, folders" in result.output
