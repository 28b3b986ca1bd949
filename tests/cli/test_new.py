"""`plugkit new`: the project it writes installs with pip, passes its own tests, is found by its name by every
command, serves a plugin that passes `check --strict`, and gets tokens from `plugkit tokens create`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from plugkit.cli import app
from tests.helpers import REPO_ROOT, PluginServer

runner = CliRunner()


def test_new_writes_the_package_entry_point_test_and_readme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["new", "fun-facts", "--auth", "oauth"])
    assert result.exit_code == 0, result.output
    project = tmp_path / "fun-facts"
    files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert files == [
        ".gitignore",
        "README.md",
        "fun_facts/__init__.py",
        "fun_facts/plugin.py",
        "pyproject.toml",
        "tests/test_plugin.py",
    ]
    pyproject = (project / "pyproject.toml").read_text(encoding="utf-8")
    assert '[project.entry-points."plugkit.plugins"]\nfun-facts = "fun_facts.plugin:plugin"' in pyproject
    assert 'auth: AuthKind = "oauth"' in (project / "fun_facts" / "plugin.py").read_text(encoding="utf-8")
    assert "plugkit serve fun-facts" in (project / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["new", "Fun Facts"], "is not a plugin name"),
        (["new", "facts", "--auth", "magic"], "is not an auth method"),
        (["new", "taken"], "already exists"),
    ],
)
def test_new_refuses_a_bad_name_an_unknown_auth_method_or_an_existing_directory(
    args: list[str], problem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").mkdir()
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and problem in result.stderr


def run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
def test_a_new_project_installs_passes_its_tests_serves_checks_strict_and_gets_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["new", "hi-and-pi", "--auth", "user_http", "--port", "5999"]).exit_code == 0
    site = tmp_path / "site"  # pip installs the project here; on the path, it is installed for every command
    pip = (sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO_ROOT / "src")])}
    run(*pip, str(tmp_path / "hi-and-pi"), cwd=tmp_path, env=env)
    monkeypatch.syspath_prepend(str(site))

    tested = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=tmp_path / "hi-and-pi", env=env)
    assert "5 passed" in tested.stdout
    listed = runner.invoke(app, ["plugins"], env={"COLUMNS": "250"})
    assert "hi-and-pi" in listed.stdout and "hi-and-pi 0.1.0" in listed.stdout

    data = tmp_path / "data"
    with PluginServer("hi-and-pi", "--data-dir", str(data), env=env) as server:
        checked = runner.invoke(app, ["check", "hi-and-pi", "--strict"], env={"PLUGKIT_PORT": str(server.port)})
        created = runner.invoke(
            app, ["tokens", "create", "--user", "alice", "--plugin", "hi-and-pi", "--data-dir", str(data)]
        )
        token = created.stdout.strip().splitlines()[-1]
        greeted = httpx.get(
            f"{server.base_url}/hi", params={"language": "arabic"}, headers={"Authorization": f"Bearer {token}"}
        )
        refused = httpx.get(f"{server.base_url}/pi")
    assert checked.exit_code == 0 and "0 errors, 0 warnings (strict mode)" in checked.stdout, checked.output
    assert greeted.status_code == 200 and greeted.json()["greeting"].startswith("مرحبا")
    assert refused.status_code == 401
