"""`plugkit users create|list`: the passwords the OAuth sign-in page checks."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from plugkit.auth.users import UserStore
from plugkit.cli import app
from plugkit.cli.common import auth_database

runner = CliRunner()


def verifies(tmp_path: Path, user: str, password: str) -> bool:
    return asyncio.run(_verifies(tmp_path, user, password))


async def _verifies(tmp_path: Path, user: str, password: str) -> bool:
    async with auth_database("todo", tmp_path) as database:
        return await UserStore(database).verify(user, password)


def test_create_reads_the_password_from_stdin(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["users", "create", "alice", "--password-stdin", "--data-dir", str(tmp_path)], input="s3cret-pass\n"
    )
    assert result.exit_code == 0, result.output
    assert "created user alice" in result.stdout and "s3cret-pass" not in result.output
    assert verifies(tmp_path, "alice", "s3cret-pass")


def test_create_again_changes_the_password(tmp_path: Path) -> None:
    args = ["users", "create", "alice", "--password-stdin", "--data-dir", str(tmp_path)]
    runner.invoke(app, args, input="first-password\n")
    result = runner.invoke(app, args, input="second-password\n")
    assert result.exit_code == 0 and "changed the password of alice" in result.stdout
    assert not verifies(tmp_path, "alice", "first-password")
    assert verifies(tmp_path, "alice", "second-password")


def test_a_short_password_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["users", "create", "alice", "--password-stdin", "--data-dir", str(tmp_path)], input="short\n"
    )
    assert result.exit_code == 2 and "shorter than 8" in result.stderr


def test_without_password_stdin_a_non_terminal_input_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["users", "create", "alice", "--data-dir", str(tmp_path)], input="s3cret-pass\n")
    assert result.exit_code == 2 and "--password-stdin" in result.stderr


def test_list_prints_the_user_names(tmp_path: Path) -> None:
    for name in ("bob", "alice"):
        runner.invoke(
            app, ["users", "create", name, "--password-stdin", "--data-dir", str(tmp_path)], input="long-password\n"
        )
    result = runner.invoke(app, ["users", "list", "--data-dir", str(tmp_path)])
    assert result.stdout.split() == ["alice", "bob"]
