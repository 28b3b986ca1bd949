"""`plugkit sports import` and `plugkit serve sports` as a person runs them."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from plugkit.cli import app
from plugkit.plugins.sports.importer import player_id_for
from tests.helpers import REPO_ROOT, SHARED_DATA, PluginServer

BOXSCORES_DIR = SHARED_DATA / "nba" / "boxscores-2023-24"


def test_import_fills_the_dataset_and_reports_counts(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["sports", "import", str(BOXSCORES_DIR), "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "1 files" in result.output and "25143 stat lines" in result.output
    with sqlite3.connect(tmp_path / "sports.db") as conn:
        assert conn.execute("select count(*) from stats").fetchone() == (25143,)


def test_import_of_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["sports", "import", str(tmp_path / "nope.csv"), "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_import_of_an_unknown_file_fails_with_status_1(tmp_path: Path) -> None:
    odd = tmp_path / "odd.csv"
    odd.write_text("x,y\n1,2\n")
    result = CliRunner().invoke(app, ["sports", "import", str(odd), "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown columns" in result.output


def test_import_shows_a_progress_bar_per_file(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "plugkit", "sports", "import", str(BOXSCORES_DIR), "--data-dir", str(tmp_path)]
    env = {"PYTHONPATH": str(REPO_ROOT / "src"), "COLUMNS": "120", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "nba_player_boxscores_2023-2024.csv" in done.stderr and "25143/25143" in done.stderr


@pytest.mark.slow
def test_serve_sports_answers_on_a_fresh_data_dir_and_after_an_import(tmp_path: Path) -> None:
    spurs = "/games?team_ids[]=27&limit=100"  # the bundled sample has only their games against LAL, BOS, DEN, GSW
    with PluginServer("sports", "--data-dir", str(tmp_path)) as server:
        teams = httpx.get(f"{server.base_url}/teams", timeout=10).json()["data"]
        lakers = httpx.get(f"{server.base_url}/games?team_ids[]=14&limit=100", timeout=10).json()["data"]
        sample_spurs = httpx.get(server.base_url + spurs, timeout=10).json()["data"]
    assert len(teams) == 30 and len(lakers) > 70 and 0 < len(sample_spurs) < 20
    result = CliRunner().invoke(app, ["sports", "import", str(BOXSCORES_DIR), "--data-dir", str(tmp_path)])
    assert result.exit_code == 0
    with PluginServer("sports", "--data-dir", str(tmp_path)) as server:
        all_spurs = httpx.get(server.base_url + spurs, timeout=10).json()["data"]
        players = httpx.get(f"{server.base_url}/players", params={"query": "wembanyama"}, timeout=10).json()["data"]
        manifest = httpx.get(f"{server.base_url}/.well-known/ai-plugin.json", timeout=10).json()
    assert len(all_spurs) > 70
    assert [p["id"] for p in players] == [player_id_for("Victor Wembanyama")]
    assert manifest["name_for_model"] == "sportsstats"


def test_import_sample_builds_the_dataset_from_the_bundled_file_without_any_path(tmp_path: Path) -> None:
    """The README's import command for a user: nothing beside the repository is needed."""
    result = CliRunner().invoke(app, ["sports", "import", "--sample", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(tmp_path / "sports.db") as conn:
        teams = {
            row[0] for row in conn.execute("select abbreviation from teams t join games g on t.id = g.home_team_id")
        }
    assert {"LAL", "BOS", "DEN", "GSW"} <= teams


def test_import_without_paths_or_sample_is_a_usage_error_saying_what_to_pass(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["sports", "import", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--sample" in result.output
