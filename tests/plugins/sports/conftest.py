"""Fixtures of the sports tests: the real 2023-24 box scores, read independently with the csv module."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from plugkit.plugins.sports.importer import import_files
from tests.helpers import REPO_ROOT, SHARED_DATA, PluginServer

NBA = SHARED_DATA / "nba"
BOXSCORES = NBA / "boxscores-2023-24" / "nba_player_boxscores_2023-2024.csv"
PLAYOFF_TEAMS = NBA / "nba-data-2010-2024" / "play_off_totals_2010_2024.csv"
PLAYER_TOTALS = NBA / "players-2019-20" / "players.csv"


@pytest.fixture(scope="session")
def boxscore_rows() -> list[dict[str, str]]:
    with BOXSCORES.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="session")
def season_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A dataset with the whole 2023-24 box score file imported (once per session)."""
    data_dir = tmp_path_factory.mktemp("sports-2023")
    import_files([BOXSCORES], data_dir / "sports.db")
    yield data_dir


UPSTREAM_KEY = "test-upstream-key-3f9c"


class UpstreamServer(PluginServer):
    """A real uvicorn process serving `plugkit serve sports-upstream`'s app with faults injectable by header
    (tests/plugins/sports/upstream_server.py); it has no manifest, so readiness is its /v1/teams."""

    def start(self, timeout: float = 60.0) -> UpstreamServer:
        self.args = [sys.executable, "-m", "uvicorn", "tests.plugins.sports.upstream_server:create_app", "--factory"]
        self.args += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        self.env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)])
        self.proc = subprocess.Popen(
            self.args, env=self.env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                headers = {"Authorization": UPSTREAM_KEY}
                if httpx.get(f"{self.base_url}/v1/teams", headers=headers, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"upstream on port {self.port} did not start within {timeout} s")

    def requests_made(self, key: str) -> int:
        """How many requests carried `x-fault-key: key` (fault mode only)."""
        return int(httpx.get(f"{self.base_url}/__faults/{key}", timeout=5).json()["requests"])


def start_upstream(root: Path, *extra_env: tuple[str, str]) -> UpstreamServer:
    key_file = root / "key"
    key_file.write_text(UPSTREAM_KEY + "\n", encoding="utf-8")
    env = {"PLUGKIT_DATA_DIR": str(root / "data"), "PLUGKIT_UPSTREAM_API_KEY_FILE": str(key_file), **dict(extra_env)}
    return UpstreamServer(env=env).start()


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamServer]:
    """The bundled 2023-24 sample served as the balldontlie v1 API, faults injectable by header."""
    server = start_upstream(tmp_path_factory.mktemp("upstream"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def legacy_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamServer]:
    """The same, answering in the legacy API's page/total_pages shape."""
    server = start_upstream(tmp_path_factory.mktemp("legacy"), ("PLUGKIT_UPSTREAM_LEGACY_PAGING", "true"))
    try:
        yield server
    finally:
        server.stop()
