from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest

from plugkit.plugins.sports.importer import import_files, player_id_for
from plugkit.plugins.sports.tables import COUNT_FIELDS

HEADER = (
    "Player,Team,Opponent,Date,Result,Minutes,Points,FGM,FGA,FG%,3PM,3PA,3P%,FTM,FTA,FT%,OREB,DREB,REB,AST,TO,STL,"
    "BLK,PF,+/-,SPI"
)
PERCENTAGES = {"fg_pct": ("fgm", "fga"), "fg3_pct": ("fg3m", "fg3a"), "ft_pct": ("ftm", "fta")}


def box_scores(path: Path, lines: list[tuple[str, str, int, int]]) -> Path:
    """A box-score CSV of the Lakers' Austin Reaves at home against Minnesota: (date, minutes, points, FGM) a line."""
    rows = [
        f"Austin Reaves,LAL,LAL vs. MIN,{day},W,{minutes},{points},{fgm},10,-,1,2,50.0,2,2,100,1,3,4,5,2,1,0,2,3,10"
        for day, minutes, points, fgm in lines
    ]
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def averages(db: Path) -> dict[tuple[int, bool], dict[str, object]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM season_averages WHERE player_id = ?", (player_id_for("Austin Reaves"),))
        return {(r["season"], bool(r["postseason"])): dict(r) for r in rows}


def test_averages_are_the_per_game_means_of_the_stored_box_scores(season_db: Path) -> None:
    lines: dict[tuple[int, bool, int], list[sqlite3.Row]] = defaultdict(list)
    with sqlite3.connect(season_db / "sports.db") as conn:
        conn.row_factory = sqlite3.Row
        for row in conn.execute("SELECT stats.*, season, postseason FROM stats JOIN games ON games.id = game_id"):
            lines[(row["season"], bool(row["postseason"]), row["player_id"])].append(row)
        stored = {
            (r["season"], bool(r["postseason"]), r["player_id"]): r
            for r in conn.execute("SELECT * FROM season_averages")
        }
    assert len(lines) > 400 and stored.keys() == lines.keys()
    for key, played in lines.items():
        row = stored[key]
        assert row["games_played"] == len(played), key
        for field in COUNT_FIELDS:
            values = [line[field] for line in played if line[field] is not None]
            assert row[field] == pytest.approx(sum(values) / len(values), abs=0.0051), (key, field)  # 2 places
        for pct, (made, attempted) in PERCENTAGES.items():
            total = sum(line[attempted] or 0 for line in played)
            expected = sum(line[made] or 0 for line in played) / total if total else None
            assert row[pct] == (None if expected is None else pytest.approx(expected, abs=0.00051)), (key, pct)  # to 3
        seconds = round(60 * sum(line["minutes"] for line in played) / len(played))
        assert row["min"] == f"{seconds // 60}:{seconds % 60:02d}", key


def test_an_import_recomputes_the_averages_of_the_seasons_its_box_scores_belong_to(tmp_path: Path) -> None:
    db = tmp_path / "sports.db"
    import_files([box_scores(tmp_path / "a.csv", [("01/05/2024", "30", 20, 8), ("01/07/2024", "34", 10, 4)])], db)
    first = averages(db)
    assert first.keys() == {(2023, False)}
    assert (first[(2023, False)]["games_played"], first[(2023, False)]["pts"]) == (2, 15.0)
    assert first[(2023, False)]["min"] == "32:00" and first[(2023, False)]["fg_pct"] == 0.6

    # one more game of 2023-24, one of 2022-23, and the first game's line corrected
    more = [("01/09/2024", "20", 3, 1), ("02/01/2023", "25", 7, 3), ("01/05/2024", "30", 26, 10)]
    import_files([box_scores(tmp_path / "b.csv", more)], db)
    second = averages(db)
    assert second.keys() == {(2023, False), (2022, False)}
    assert (second[(2023, False)]["games_played"], second[(2023, False)]["pts"]) == (3, 13.0)
    assert second[(2023, False)]["fg_pct"] == round(15 / 30, 3)
    assert (second[(2022, False)]["games_played"], second[(2022, False)]["pts"]) == (1, 7.0)
