"""The local backend's queries, straight on the dataset."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest

from plugkit.plugins.sports.importer import import_files, player_id_for
from plugkit.plugins.sports.local import LocalBackend
from plugkit.plugins.sports.models import GameFilter, PlayerFilter, StatFilter
from plugkit.storage import Database
from tests.plugins.sports.conftest import PLAYOFF_TEAMS


@pytest.fixture
async def backend(season_db: Path) -> AsyncIterator[LocalBackend]:
    local = LocalBackend(Database(f"sqlite+aiosqlite:///{season_db / 'sports.db'}"))
    yield local
    await local.close()


async def test_search_ignores_accents_and_case(backend: LocalBackend) -> None:
    for query in ("jokić", "JOKIC", "nikola jok"):
        found = await backend.players(PlayerFilter(search=query), 10)
        assert [p.id for p in found] == [player_id_for("Nikola Jokic")], query


async def test_search_wildcards_are_taken_literally(backend: LocalBackend) -> None:
    assert await backend.players(PlayerFilter(search="%"), 10) == []
    assert await backend.players(PlayerFilter(search="_"), 10) == []


async def test_team_filter_lists_a_roster(backend: LocalBackend) -> None:
    roster = await backend.players(PlayerFilter(team_ids=(14,)), 100)
    assert "LeBron James" in {f"{p.first_name} {p.last_name}" for p in roster}
    assert all(p.team and p.team.id == 14 for p in roster)


async def test_season_averages_of_an_unknown_player_or_season_are_empty(backend: LocalBackend) -> None:
    assert await backend.season_averages(2023, (1,)) == []
    assert await backend.season_averages(2015, (player_id_for("LeBron James"),)) == []


async def test_counts_agree_with_listings(backend: LocalBackend) -> None:
    games = GameFilter(team_ids=(2,), start_date=date(2024, 1, 1), end_date=date(2024, 1, 31))
    listed = await backend.games(games, 100)
    assert await backend.count_games(games) == len(listed) > 5
    stats = StatFilter(game_ids=tuple(g.id for g in listed[:2]))
    assert await backend.count_stats(stats) == len(await backend.stats(stats, 100)) > 10


async def test_postseason_filter_separates_playoff_games(tmp_path: Path) -> None:
    db = tmp_path / "sports.db"
    import_files([PLAYOFF_TEAMS], db)
    local = LocalBackend(Database(f"sqlite+aiosqlite:///{db}"))
    try:
        playoffs = await local.count_games(GameFilter(seasons=(2023,), postseason=True))
        regular = await local.count_games(GameFilter(seasons=(2023,), postseason=False))
    finally:
        await local.close()
    assert playoffs > 70 and regular == 0


async def test_a_repeated_question_is_answered_from_the_cache_until_the_dataset_changes(tmp_path: Path) -> None:
    db = tmp_path / "sports.db"
    import_files([PLAYOFF_TEAMS], db)
    local = LocalBackend(Database(f"sqlite+aiosqlite:///{db}"))
    try:
        first = await local.teams()
        assert await local.teams() == first and len(local.answers) == 1
        with sqlite3.connect(db) as other:  # another process's write, as an import makes
            other.execute("UPDATE teams SET city = 'Renamed' WHERE id = ?", (first[0].id,))
        changed = await local.teams()
        assert changed[0].city == "Renamed" and changed[1:] == first[1:]
    finally:
        await local.close()


async def test_a_cache_of_size_zero_asks_the_dataset_every_time(tmp_path: Path) -> None:
    db = tmp_path / "sports.db"
    import_files([PLAYOFF_TEAMS], db)
    local = LocalBackend(Database(f"sqlite+aiosqlite:///{db}"), cache_size=0)
    try:
        assert (await local.teams())[0].city != "Renamed"
        assert len(local.answers) == 0
    finally:
        await local.close()


async def test_a_cached_answer_is_a_list_of_its_own_for_each_caller(backend: LocalBackend) -> None:
    first = await backend.games(GameFilter(team_ids=(2,)), 5)
    first.clear()
    assert len(await backend.games(GameFilter(team_ids=(2,)), 5)) == 5
