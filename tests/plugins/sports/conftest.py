"""Fixtures of the sports tests: the real 2023-24 box scores, read independently with the csv module."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

from plugkit.plugins.sports.importer import import_files
from tests.helpers import SHARED_DATA

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
