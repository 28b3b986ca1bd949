"""Importing the real NBA files and balldontlie exports into the local dataset."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

from plugkit.plugins.sports.importer import (
    ImportFormatError,
    bundled_sample,
    ensure_dataset,
    game_id_for,
    import_files,
    player_id_for,
)
from tests.plugins.sports.conftest import PLAYER_TOTALS, PLAYOFF_TEAMS


def query(db: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def test_player_ids_are_stable_and_ignore_accents_case_and_dots() -> None:
    assert player_id_for("Nikola Jokić") == player_id_for("nikola  jokic") == player_id_for("Nikola Jokic")
    assert player_id_for("Kelly Oubre Jr.") == player_id_for("Kelly Oubre Jr")
    assert player_id_for("LeBron James") != player_id_for("Bronny James")
    assert 0 < player_id_for("LeBron James") < 2**53


def test_game_ids_read_as_the_date_and_the_home_team() -> None:
    from datetime import date

    assert game_id_for(date(2024, 4, 7), 14) == 2024040714


def test_importing_the_same_file_twice_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "sports.db"
    first = import_files([bundled_sample()], db)
    counts = [query(db, f"select count(*) from {t}")[0][0] for t in ("players", "games", "stats")]
    second = import_files([bundled_sample()], db)
    assert [query(db, f"select count(*) from {t}")[0][0] for t in ("players", "games", "stats")] == counts
    assert (first.players, first.games, first.stats) == (second.players, second.games, second.stats)
    assert counts == [first.players, first.games, first.stats]


def test_the_season_file_gives_one_game_per_matchup_and_a_stat_line_per_row(
    season_db: Path, boxscore_rows: list[dict[str, str]]
) -> None:
    db = season_db / "sports.db"
    matchups = {(r["Date"], frozenset(r["Opponent"].replace(" vs. ", " @ ").split(" @ "))) for r in boxscore_rows}
    assert query(db, "select count(*) from games")[0][0] == len(matchups)
    assert query(db, "select count(*) from stats")[0][0] == len(boxscore_rows)
    assert query(db, "select count(*) from games where season != 2023 or postseason")[0][0] == 0


def test_a_traded_player_belongs_to_his_latest_team(season_db: Path, boxscore_rows: list[dict[str, str]]) -> None:
    def iso(day: str) -> str:
        month, dd, year = day.split("/")
        return f"{year}-{month}-{dd}"

    latest = max((iso(r["Date"]), r["Team"]) for r in boxscore_rows if r["Player"] == "Pascal Siakam")
    [(team,)] = query(
        season_db / "sports.db",
        "select t.abbreviation from players p join teams t on t.id = p.team_id where p.id = ?",
        player_id_for("Pascal Siakam"),
    )
    assert team == latest[1] == "IND"


def test_playoff_team_box_scores_give_postseason_games_with_their_scores(tmp_path: Path) -> None:
    db = tmp_path / "sports.db"
    import_files([PLAYOFF_TEAMS], db)
    with PLAYOFF_TEAMS.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert query(db, "select count(*) from games")[0][0] == len({r["GAME_ID"] for r in rows})
    finals = [r for r in rows if r["GAME_DATE"].startswith("2024-06-17")]  # Boston won the 2024 title that night
    [(home, visitor, home_score, visitor_score, postseason, season)] = query(
        db,
        "select h.abbreviation, v.abbreviation, home_team_score, visitor_team_score, postseason, season "
        "from games g join teams h on h.id = g.home_team_id join teams v on v.id = g.visitor_team_id "
        "where date = '2024-06-17'",
    )
    by_team = {r["TEAM_ABBREVIATION"]: int(r["PTS"]) for r in finals}
    assert (home, visitor) == ("BOS", "DAL")
    assert (home_score, visitor_score) == (by_team["BOS"], by_team["DAL"])
    assert postseason == 1 and season == 2023


def test_a_player_list_adds_players_with_their_teams(tmp_path: Path) -> None:
    db = tmp_path / "sports.db"
    report = import_files([PLAYER_TOTALS], db)
    with PLAYER_TOTALS.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert report.players == len({r["PLAYER"] for r in rows})
    [(team,)] = query(
        db,
        "select t.abbreviation from players p join teams t on t.id = p.team_id where p.id = ?",
        player_id_for("James Harden"),
    )
    assert team == "HOU"


def test_a_balldontlie_export_keeps_its_ids_and_fields(tmp_path: Path) -> None:
    export = {
        "data": [
            {
                "id": 1001,
                "min": "35:12",
                "fgm": 10,
                "fga": 20,
                "fg_pct": 0.5,
                "fg3m": 2,
                "fg3a": 5,
                "fg3_pct": 0.4,
                "ftm": 5,
                "fta": 6,
                "ft_pct": 0.833,
                "oreb": 1,
                "dreb": 7,
                "reb": 8,
                "ast": 9,
                "stl": 1,
                "blk": 1,
                "turnover": 3,
                "pf": 2,
                "pts": 27,
                "player": {
                    "id": 237,
                    "first_name": "LeBron",
                    "last_name": "James",
                    "position": "F",
                    "height": "6-9",
                    "weight": "250",
                    "team_id": 14,
                },
                "team": {"id": 14, "abbreviation": "LAL"},
                "game": {
                    "id": 555,
                    "date": "2023-10-24T00:00:00.000Z",
                    "season": 2023,
                    "status": "Final",
                    "postseason": False,
                    "home_team_id": 8,
                    "visitor_team_id": 14,
                    "home_team_score": 119,
                    "visitor_team_score": 107,
                },
            },
        ],
        "meta": {"next_cursor": None},
    }
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(export), encoding="utf-8")
    db = tmp_path / "sports.db"
    report = import_files([path], db)
    assert (report.players, report.games, report.stats) == (1, 1, 1)
    assert query(db, "select first_name, position, height, team_id from players where id = 237") == [
        ("LeBron", "F", "6-9", 14)
    ]
    assert query(db, "select date, home_team_id, home_team_score from games where id = 555") == [("2023-10-24", 8, 119)]
    assert query(db, "select pts, minutes from stats where id = 1001") == [(27.0, pytest.approx(35.2))]


def test_a_directory_is_searched_for_importable_files(tmp_path: Path) -> None:
    nested = tmp_path / "in" / "deeper"
    nested.mkdir(parents=True)
    (nested / "sample.csv.gz").write_bytes(bundled_sample().read_bytes())
    (nested / "notes.txt").write_text("not data")
    report = import_files([tmp_path / "in"], tmp_path / "sports.db")
    assert report.files == 1 and report.stats > 1000


def test_a_file_of_unknown_shape_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    odd = tmp_path / "odd.csv"
    odd.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ImportFormatError, match="unknown columns"):
        import_files([bundled_sample(), odd], tmp_path / "sports.db")
    assert not (tmp_path / "sports.db").exists() or query(tmp_path / "sports.db", "select count(*) from games") == [
        (0,)
    ]


def test_a_fresh_dataset_is_built_from_the_bundled_sample_once(tmp_path: Path) -> None:
    db = tmp_path / "data" / "sports.db"
    assert ensure_dataset(db) is True
    assert ensure_dataset(db) is False
    assert query(db, "select count(*) from teams")[0][0] == 30
    assert query(db, "select count(*) from stats")[0][0] > 5000
    assert bundled_sample().stat().st_size < 300_000
    assert [p.name for p in db.parent.iterdir() if p.name.startswith(".sports-")] == []
