"""The local backend's queries, straight on the dataset."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
from pydantic import BaseModel
from pydantic_core import to_json
from sqlalchemy import Connection

from plugkit.plugins.sports import tables
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


class SqlAlchemyReads(Database):
    """The same SQLite file read through SQLAlchemy (`run_read`), as on PostgreSQL: no driver connection to hand."""

    def sqlite_reader(self) -> sqlite3.Connection | None:
        return None


PAGES = ((25, 0), (101, 0), (7, 13), (10, 10_000))


def answer_spread(db: Path) -> list[tuple[str, tuple[object, ...]]]:
    """Calls over every filter kind, alone and together, with paging and empty results, drawn from the dataset."""
    with sqlite3.connect(db) as con:
        players = [r[0] for r in con.execute("SELECT id FROM players ORDER BY id")][::50][:8] or [5, 6]
        games = [r[0] for r in con.execute("SELECT id FROM games ORDER BY id")][::97][:6]
        days = [date.fromisoformat(r[0]) for r in con.execute("SELECT DISTINCT date FROM games ORDER BY date")][::23]
    spread: list[tuple[str, tuple[object, ...]]] = [("teams", ())]
    spread += [("team", (team_id,)) for team_id in (1, 14, 30, 31)]
    player_filters = [
        PlayerFilter(),
        PlayerFilter(search="james"),
        PlayerFilter(search="le bron"),
        PlayerFilter(search="%_"),
        PlayerFilter(search="."),
        PlayerFilter(search="zzzz"),
        PlayerFilter(player_ids=tuple(players[:3])),
        PlayerFilter(team_ids=(14, 2, 7)),
        PlayerFilter(search="a", team_ids=(2, 3), player_ids=tuple(players)),
    ]
    game_filters = [
        GameFilter(),
        GameFilter(seasons=(2023,)),
        GameFilter(seasons=(2022,)),
        GameFilter(team_ids=(2, 14, 7)),
        GameFilter(game_ids=tuple(games)),
        GameFilter(dates=tuple(days[:5])),
        GameFilter(start_date=date(2024, 1, 1), end_date=date(2024, 1, 31), team_ids=(2,)),
        GameFilter(end_date=date(2023, 11, 1)),
        GameFilter(postseason=True),
        GameFilter(seasons=(2023, 2024), postseason=False, team_ids=(9,)),
    ]
    stat_filters = [
        StatFilter(),
        StatFilter(player_ids=tuple(players[:2])),
        StatFilter(game_ids=tuple(games[:2])),
        StatFilter(seasons=(2023,), team_ids=(14,)),
        StatFilter(dates=tuple(days[:2])),
        StatFilter(start_date=date(2024, 3, 1), end_date=date(2024, 3, 3)),
        StatFilter(postseason=True),
        StatFilter(postseason=False, player_ids=tuple(players)),
        StatFilter(team_ids=(2, 3), game_ids=tuple(games), seasons=(2023,)),
    ]
    for method, filters in (("players", player_filters), ("games", game_filters), ("stats", stat_filters)):
        for one in filters:
            spread += [(method, (one, limit, offset)) for limit, offset in PAGES]
            spread.append((f"count_{method}", (one,)))
    for season in (2023, 2022):
        for ids in ((), players[:1], tuple(players), (1,)):
            spread += [("season_averages", (season, tuple(ids), postseason)) for postseason in (False, True)]
    return spread


def as_json(answer: object) -> object:
    if isinstance(answer, list):
        return [item.model_dump_json() for item in answer]
    return answer.model_dump_json() if isinstance(answer, BaseModel) else answer


@pytest.mark.parametrize("dataset", ["season", "playoffs"])
async def test_sqlite_reads_answer_as_the_sqlalchemy_path_does(dataset: str, season_db: Path, tmp_path: Path) -> None:
    db = season_db / "sports.db"
    if dataset == "playoffs":  # postseason games, teams without players
        db = tmp_path / "sports.db"
        import_files([PLAYOFF_TEAMS], db)
    prepared = LocalBackend(Database(f"sqlite+aiosqlite:///{db}"), cache_size=0)
    reference = LocalBackend(SqlAlchemyReads(f"sqlite+aiosqlite:///{db}"), cache_size=0)
    assert prepared.db.sqlite_reader() is not None and reference.db.sqlite_reader() is None
    nonempty = 0
    try:
        for method, args in answer_spread(db):
            mine = as_json(await getattr(prepared, method)(*args))
            assert mine == as_json(await getattr(reference, method)(*args)), (method, args)
            nonempty += bool(mine)
    finally:
        await prepared.close()
        await reference.close()
    assert nonempty > 20  # the spread reaches real rows, not only empty answers


ROWS = {"players": "player_rows", "games": "game_rows", "stats": "stat_rows", "season_averages": "season_average_rows"}


@pytest.mark.parametrize("reads", ["prepared", "sqlalchemy"])
async def test_rows_serialise_to_the_json_of_the_answers_models(reads: str, season_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "sports.db"
    import_files([PLAYOFF_TEAMS], db)  # postseason games, teams without players
    for path in (season_db / "sports.db", db):
        url = f"sqlite+aiosqlite:///{path}"
        local = LocalBackend(Database(url) if reads == "prepared" else SqlAlchemyReads(url), cache_size=0)
        nonempty = 0
        try:
            for method, args in answer_spread(path):
                if method in ROWS:
                    models = await getattr(local, method)(*args)
                    rows = await getattr(local, ROWS[method])(*args)
                    assert to_json(rows) == to_json(models), (method, args)
                    nonempty += bool(rows)
        finally:
            await local.close()
        assert nonempty > 10


@pytest.mark.parametrize("cache_size", [0, 2048])
async def test_the_teams_inside_answers_follow_a_change_to_the_dataset(tmp_path: Path, cache_size: int) -> None:
    db = tmp_path / "sports.db"
    import_files([PLAYOFF_TEAMS], db)
    local = LocalBackend(Database(f"sqlite+aiosqlite:///{db}"), cache_size=cache_size)
    try:
        game = (await local.games(GameFilter(postseason=True), 1))[0]
        assert game.home_team is not None
        with sqlite3.connect(db) as other:  # another process's write, as an import makes
            other.execute("UPDATE teams SET city = 'Renamed' WHERE id = ?", (game.home_team.id,))
        again = (await local.games(GameFilter(postseason=True), 1))[0]
        assert again.home_team is not None and again.home_team.city == "Renamed"
        assert (await local.team(game.home_team.id)) == again.home_team
    finally:
        await local.close()


@pytest.mark.parametrize("cache_size", [0, 2048])
async def test_a_name_search_finds_a_player_an_import_added_since_the_last_search(
    tmp_path: Path, cache_size: int
) -> None:
    db = tmp_path / "sports.db"
    import_files([PLAYOFF_TEAMS], db)
    local = LocalBackend(Database(f"sqlite+aiosqlite:///{db}"), cache_size=cache_size)
    try:
        assert await local.players(PlayerFilter(search="wembanyama"), 10) == []
        with sqlite3.connect(db) as other:  # another process's write, as an import makes
            other.execute(
                "INSERT INTO players (id, first_name, last_name, search_name, team_id) "
                "VALUES (7, 'Victor', 'Wembanyama', 'victor wembanyama', 27)"
            )
        [found] = await local.players(PlayerFilter(search="wembanyama"), 10)
        assert (found.id, found.last_name, found.team and found.team.id) == (7, "Wembanyama", 27)
        assert await local.count_players(PlayerFilter(search="victor", team_ids=(27,))) == 1
    finally:
        await local.close()


async def test_name_search_finds_the_same_players_on_postgresql(season_db: Path, postgres_url: str) -> None:
    source = season_db / "sports.db"
    pg = Database(postgres_url, schema="sports_name_search")
    await pg.create_all(tables.metadata)
    columns = ("id", "first_name", "last_name", "search_name")
    with sqlite3.connect(source) as conn:
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM players ORDER BY id").fetchall()
    players = [dict(zip(columns, row, strict=True)) for row in rows]  # their own 48-bit ids (BIGINT there)
    assert max(p["id"] for p in players) > 2**31

    def copy(connection: Connection) -> None:
        connection.execute(tables.players.delete())
        connection.execute(tables.players.insert(), players)

    await pg.run_write(copy)
    on_sqlite = LocalBackend(Database(f"sqlite+aiosqlite:///{source}"), cache_size=0)
    on_postgres = LocalBackend(pg, cache_size=0)
    try:
        for search in ("james", "LeBron", "jokić", "nikola jok", "le", "%", "_", "o'", "zzz"):
            found = [await b.players(PlayerFilter(search=search), 100) for b in (on_sqlite, on_postgres)]
            names = [sorted((p.first_name, p.last_name) for p in answer) for answer in found]
            assert names[0] == names[1], search
            assert bool(names[0]) == (search not in ("%", "_", "zzz")), search
    finally:
        await on_sqlite.close()
        await on_postgres.close()
