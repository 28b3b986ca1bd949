"""Build the local SQLite dataset from the real NBA CSV files and from balldontlie JSON exports.

Files without ids get stable derived ones, so a re-import replaces rows instead of duplicating them:
teams use balldontlie's ids (by abbreviation), players a hash of the normalised name, games
`YYYYMMDD` followed by the home team's id, stat lines a hash of (game id, player id).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import tempfile
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, case, create_engine, func, select
from sqlalchemy.dialects.sqlite import insert

from plugkit import schema
from plugkit.plugins.sports import averages, tables
from plugkit.plugins.sports.teams import TEAMS, team_for

Progress = Callable[[str, int, int], None]  # (file name, rows done, rows in the file)
SUFFIXES = (".csv", ".csv.gz", ".json", ".json.gz")
BUNDLED_SAMPLE = "boxscores_2023_24_sample.csv.gz"


class ImportFormatError(ValueError):
    """A file whose shape is none of the known ones."""


@dataclass
class ImportReport:
    files: int = 0
    players: int = 0
    games: int = 0
    stats: int = 0
    skipped_rows: int = 0


def normalise_name(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.lower().replace(".", "").split())


def _hash48(text: str) -> int:
    # 48 bits: collisions are negligible for any real roster, and ids stay exact in JavaScript clients.
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=6).digest(), "big")


def player_id_for(name: str) -> int:
    return _hash48("player:" + normalise_name(name))


def game_id_for(day: date, home_team_id: int) -> int:
    return int(f"{day:%Y%m%d}{home_team_id:02d}")


def stat_id_for(game_id: int, player_id: int) -> int:
    return _hash48(f"stat:{game_id}:{player_id}")


def season_of(day: date) -> int:
    """The year a season started: games from September on belong to that year's season."""
    return day.year if day.month >= 9 else day.year - 1


def split_name(name: str) -> tuple[str, str]:
    first, _, last = " ".join(name.split()).partition(" ")
    return first, last


def _num(value: str | None) -> float | None:
    if value is None:
        return None
    value = value.strip()
    if value in ("", "-"):
        return None
    return float(value)


def _int(value: str | None) -> int:
    number = _num(value)
    return int(number) if number is not None else 0


def _pct(made: float | None, attempted: float | None) -> float | None:
    return round(made / attempted, 3) if made is not None and attempted else None


def _minutes(value: str | None) -> float | None:
    """'29', '29.5' or '29:30' as a number of minutes."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if ":" in text:
        mins, _, secs = text.partition(":")
        return float(mins) + float(secs or 0) / 60
    return float(text)


def _date(value: str) -> date:
    text = value.strip()
    for fmt in ("%m/%d/%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(text[:10], fmt).date()
        except ValueError:
            continue
    raise ImportFormatError(f"unreadable date {value!r}")


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115


# Box-score columns by file format: stat -> the column holding it.
# The 2023-24 player box scores name the columns after AST as TO, STL, BLK, but the values are steals, blocks and
# turnovers, in that order (per-player averages match the official ones only so).
PLAYER_BOXSCORE_COLUMNS = {
    "fgm": "FGM", "fga": "FGA", "fg3m": "3PM", "fg3a": "3PA", "ftm": "FTM", "fta": "FTA",
    "oreb": "OREB", "dreb": "DREB", "reb": "REB", "ast": "AST",
    "stl": "TO", "blk": "STL", "turnover": "BLK", "pf": "PF", "pts": "Points",
}  # fmt: skip
PLAYOFF_BOXSCORE_COLUMNS = {
    "fgm": "fieldGoalsMade", "fga": "fieldGoalsAttempted", "fg3m": "threePointersMade",
    "fg3a": "threePointersAttempted", "ftm": "freeThrowsMade", "fta": "freeThrowsAttempted",
    "oreb": "reboundsOffensive", "dreb": "reboundsDefensive", "reb": "reboundsTotal", "ast": "assists",
    "stl": "steals", "blk": "blocks", "turnover": "turnovers", "pf": "foulsPersonal", "pts": "points",
}  # fmt: skip


def _stat_values(row: dict[str, str], columns: dict[str, str]) -> dict[str, Any]:
    """A box-score line's stats read through a column map, with the shooting percentages."""
    values: dict[str, Any] = {stat: _num(row[column]) for stat, column in columns.items()}
    values["fg_pct"] = _pct(values.get("fgm"), values.get("fga"))
    values["fg3_pct"] = _pct(values.get("fg3m"), values.get("fg3a"))
    values["ft_pct"] = _pct(values.get("ftm"), values.get("fta"))
    return values


class _Batch:
    """Rows collected from the files of one import, written in one transaction."""

    def __init__(self) -> None:
        self.players: dict[int, dict[str, Any]] = {}
        self.games: dict[int, dict[str, Any]] = {}
        self.stats: dict[int, dict[str, Any]] = {}
        self.skipped = 0

    def player(self, name: str, team_id: int | None, seen: str, **extra: Any) -> int:
        pid = player_id_for(name)
        first, last = split_name(name)
        row = {
            "id": pid,
            "first_name": first,
            "last_name": last,
            "search_name": normalise_name(name),
            "team_id": team_id,
            "last_seen": seen,
            **extra,
        }
        known = self.players.get(pid)
        if known is None or (known.get("last_seen") or "") <= seen:
            self.players[pid] = {**(known or {}), **row}
        return pid


def _sniff(path: Path) -> str:
    if path.name.endswith((".json", ".json.gz")):
        return "balldontlie_json"
    with _open_text(path) as handle:
        header = next(csv.reader(handle), [])
    columns = set(header)
    if {"Player", "Team", "Opponent", "Date", "Points"} <= columns:
        return "player_boxscores"
    if {"SEASON_YEAR", "TEAM_ABBREVIATION", "MATCHUP", "GAME_DATE", "PTS"} <= columns:
        return "team_boxscores"
    if {"season_year", "game_date", "gameId", "teamTricode", "personName", "points"} <= columns:
        return "playoff_player_boxscores"
    if {"PLAYER", "TEAM", "GP", "PTS"} <= columns:
        return "player_totals"
    raise ImportFormatError(f"{path.name}: unknown columns {', '.join(header[:8])}...")


# Team box scores give the scores, so they go before player rows that only name a team and a date.
_ORDER = {
    "team_boxscores": 0,
    "balldontlie_json": 1,
    "player_boxscores": 2,
    "playoff_player_boxscores": 3,
    "player_totals": 4,
}


def _rows(path: Path, progress: Progress | None) -> Iterator[dict[str, str]]:
    with _open_text(path) as handle:
        total = sum(1 for _ in handle) - 1
    with _open_text(path) as handle:
        for n, row in enumerate(csv.DictReader(handle), start=1):
            yield row
            if progress and (n % 500 == 0 or n == total):
                progress(path.name, n, total)


def _matchup(text: str) -> tuple[str, str, bool]:
    """'NYK @ MIL' -> (NYK, MIL, False: NYK is away); 'GSW vs. UTA' -> (GSW, UTA, True)."""
    if " @ " in text:
        own, _, other = text.partition(" @ ")
        return own.strip(), other.strip(), False
    for sep in (" vs. ", " vs "):
        if sep in text:
            own, _, other = text.partition(sep)
            return own.strip(), other.strip(), True
    raise ImportFormatError(f"unreadable matchup {text!r}")


def _read_player_boxscores(path: Path, batch: _Batch, progress: Progress | None) -> None:
    """The 2023-24 player box scores (see PLAYER_BOXSCORE_COLUMNS for their mislabelled columns)."""
    points: dict[tuple[int, int], int] = defaultdict(int)
    for row in _rows(path, progress):
        try:
            day = _date(row["Date"])
            own, other, home = _matchup(row["Opponent"])
            team, opponent = team_for(own), team_for(other)
        except (ImportFormatError, KeyError):
            batch.skipped += 1
            continue
        home_team, visitor = (team, opponent) if home else (opponent, team)
        gid = game_id_for(day, home_team.id)
        batch.games.setdefault(
            gid,
            {
                "id": gid,
                "date": day.isoformat(),
                "season": season_of(day),
                "status": "Final",
                "period": 4,
                "time": "Final",
                "postseason": False,
                "home_team_id": home_team.id,
                "visitor_team_id": visitor.id,
                "home_team_score": None,
                "visitor_team_score": None,
            },
        )
        pid = batch.player(row["Player"], team.id, day.isoformat())
        values = _stat_values(row, PLAYER_BOXSCORE_COLUMNS)
        minutes = _minutes(row["Minutes"])
        batch.stats[stat_id_for(gid, pid)] = {
            "id": stat_id_for(gid, pid),
            "player_id": pid,
            "team_id": team.id,
            "game_id": gid,
            "min": row["Minutes"].strip() or None,
            "minutes": minutes,
            **values,
        }
        points[(gid, team.id)] += _int(row["Points"])
    # A game's score is the sum of its players' points.
    for (gid, team_id), total in points.items():
        game = batch.games[gid]
        side = "home_team_score" if game["home_team_id"] == team_id else "visitor_team_score"
        game[side] = total


def _read_team_boxscores(path: Path, batch: _Batch, progress: Progress | None) -> None:
    for row in _rows(path, progress):
        try:
            day = _date(row["GAME_DATE"])
            own, other, home = _matchup(row["MATCHUP"])
            team, opponent = team_for(own), team_for(other)
        except (ImportFormatError, KeyError):
            batch.skipped += 1
            continue
        home_team, visitor = (team, opponent) if home else (opponent, team)
        gid = game_id_for(day, home_team.id)
        season = int(row["SEASON_YEAR"][:4]) if row.get("SEASON_YEAR") else season_of(day)
        game = batch.games.setdefault(
            gid,
            {
                "id": gid,
                "date": day.isoformat(),
                "season": season,
                "status": "Final",
                "period": 4,
                "time": "Final",
                "postseason": "play_off" in path.name or row.get("GAME_ID", "").startswith("004"),
                "home_team_id": home_team.id,
                "visitor_team_id": visitor.id,
                "home_team_score": None,
                "visitor_team_score": None,
            },
        )
        game["home_team_score" if home else "visitor_team_score"] = _int(row["PTS"])


def _read_playoff_player_boxscores(path: Path, batch: _Batch, conn: Connection, progress: Progress | None) -> None:
    by_day_team: dict[tuple[str, int], int] = {}
    for game in batch.games.values():
        by_day_team[(game["date"], game["home_team_id"])] = game["id"]
        by_day_team[(game["date"], game["visitor_team_id"])] = game["id"]
    for gid, day, home_id, visitor_id in conn.execute(
        select(tables.games.c.id, tables.games.c.date, tables.games.c.home_team_id, tables.games.c.visitor_team_id)
    ):
        by_day_team.setdefault((day, home_id), gid)
        by_day_team.setdefault((day, visitor_id), gid)
    for row in _rows(path, progress):
        try:
            day = _date(row["game_date"])
            team = team_for(row["teamTricode"])
        except (ImportFormatError, KeyError):
            batch.skipped += 1
            continue
        gid = by_day_team.get((day.isoformat(), team.id))
        minutes = _minutes(row.get("minutes"))
        if gid is None or not minutes:  # no known game (import the team box scores too), or did not play
            batch.skipped += 1
            continue
        pid = batch.player(
            row["personName"],
            team.id,
            day.isoformat(),
            position=row.get("position") or None,
            jersey_number=row.get("jerseyNum") or None,
        )
        values = _stat_values(row, PLAYOFF_BOXSCORE_COLUMNS)
        batch.stats[stat_id_for(gid, pid)] = {
            "id": stat_id_for(gid, pid),
            "player_id": pid,
            "team_id": team.id,
            "game_id": gid,
            "min": row["minutes"].strip(),
            "minutes": minutes,
            **values,
        }


def _read_player_totals(path: Path, batch: _Batch, progress: Progress | None) -> None:
    for row in _rows(path, progress):
        try:
            team_id: int | None = team_for(row["TEAM"]).id
        except KeyError:
            team_id = None
        if not row.get("PLAYER", "").strip():
            batch.skipped += 1
            continue
        batch.player(row["PLAYER"], team_id, "")  # no date: any dated row wins over it


def _json_items(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        document = json.load(handle)
    items = document.get("data", document) if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise ImportFormatError(f"{path.name}: expected a list or {{data: [...]}}")
    return [item for item in items if isinstance(item, dict)]


def _team_id(value: Any) -> int | None:
    return value.get("id") if isinstance(value, dict) else value if isinstance(value, int) else None


def _read_balldontlie_json(path: Path, batch: _Batch, progress: Progress | None) -> None:
    items = _json_items(path)
    for n, item in enumerate(items, start=1):
        if progress and (n % 500 == 0 or n == len(items)):
            progress(path.name, n, len(items))
        if "pts" in item and isinstance(item.get("game"), dict) and isinstance(item.get("player"), dict):
            _json_game(item["game"], batch)
            _json_player(item["player"], batch, item["game"].get("date", ""))
            gid, pid = item["game"]["id"], item["player"]["id"]
            line = {k: item.get(k) for k in tables.STAT_FIELDS}
            batch.stats[int(item["id"])] = {
                "id": int(item["id"]),
                "player_id": pid,
                "game_id": gid,
                "team_id": _team_id(item.get("team")),
                "min": str(item["min"]) if item.get("min") is not None else None,
                "minutes": _minutes(str(item["min"])) if item.get("min") else None,
                **line,
            }
        elif "first_name" in item:
            _json_player(item, batch, "")
        elif "home_team_score" in item:
            _json_game(item, batch)
        elif "abbreviation" in item or "games_played" in item:
            continue  # teams are built in; season averages are computed from the stat lines
        else:
            batch.skipped += 1


def _json_game(item: dict[str, Any], batch: _Batch) -> None:
    day = _date(str(item["date"]))
    home = _team_id(item.get("home_team")) or item.get("home_team_id")
    visitor = _team_id(item.get("visitor_team")) or item.get("visitor_team_id")
    batch.games[int(item["id"])] = {
        "id": int(item["id"]),
        "date": day.isoformat(),
        "season": int(item.get("season") or season_of(day)),
        "status": item.get("status"),
        "period": item.get("period"),
        "time": item.get("time"),
        "postseason": bool(item.get("postseason")),
        "home_team_id": home,
        "visitor_team_id": visitor,
        "home_team_score": item.get("home_team_score"),
        "visitor_team_score": item.get("visitor_team_score"),
    }


def _json_player(item: dict[str, Any], batch: _Batch, seen: str) -> None:
    pid = int(item["id"])
    known = batch.players.get(pid, {})
    fields = (
        "position",
        "height",
        "weight",
        "jersey_number",
        "college",
        "country",
        "draft_year",
        "draft_round",
        "draft_number",
    )
    row = {
        "id": pid,
        "first_name": item.get("first_name") or "",
        "last_name": item.get("last_name") or "",
        **{
            k: (str(item[k]) if k in ("height", "weight", "jersey_number") and item.get(k) is not None else item.get(k))
            for k in fields
        },
        "team_id": _team_id(item.get("team")) or item.get("team_id"),
        "last_seen": str(seen)[:10],
    }
    row["search_name"] = normalise_name(f"{row['first_name']} {row['last_name']}")
    batch.players[pid] = {**known, **{k: v for k, v in row.items() if v is not None}}


def discover(paths: Iterable[Path]) -> list[Path]:
    """The importable files among `paths`, directories searched recursively."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES)))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
    return found


def ensure_schema(conn: Connection) -> None:
    schema.upgrade(conn, tables.metadata)
    conn.execute(insert(tables.teams).on_conflict_do_nothing(), [t.model_dump() for t in TEAMS])


def import_files(paths: Sequence[Path], db_path: Path, progress: Progress | None = None) -> ImportReport:
    """Import the files into the SQLite dataset at `db_path` (created if needed), in one transaction."""
    files = discover(paths)
    kinds = sorted(((f, _sniff(f)) for f in files), key=lambda fk: _ORDER[fk[1]])
    db_path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{db_path}")
    report = ImportReport(files=len(files))
    try:
        with engine.begin() as conn:
            ensure_schema(conn)
            batch = _Batch()
            for path, kind in kinds:
                if kind == "player_boxscores":
                    _read_player_boxscores(path, batch, progress)
                elif kind == "team_boxscores":
                    _read_team_boxscores(path, batch, progress)
                elif kind == "playoff_player_boxscores":
                    _read_playoff_player_boxscores(path, batch, conn, progress)
                elif kind == "player_totals":
                    _read_player_totals(path, batch, progress)
                else:
                    _read_balldontlie_json(path, batch, progress)
            _write(conn, batch)
            touched = {row["game_id"] for row in batch.stats.values()} | set(batch.games)
            averages.refresh(conn, averages.seasons_of_games(conn, touched))
            report.players, report.games, report.stats = len(batch.players), len(batch.games), len(batch.stats)
            report.skipped_rows = batch.skipped
    finally:
        engine.dispose()
    return report


def _write(conn: Connection, batch: _Batch) -> None:
    if batch.games:
        stmt = insert(tables.games)
        cols = {
            c: getattr(stmt.excluded, c)
            for c in ("date", "season", "status", "period", "time", "postseason", "home_team_id", "visitor_team_id")
        }
        for side in ("home_team_score", "visitor_team_score"):
            cols[side] = func.coalesce(getattr(stmt.excluded, side), getattr(tables.games.c, side))
        conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=cols), list(batch.games.values()))
    if batch.players:
        columns = [c.name for c in tables.players.columns]
        rows = [{c: row.get(c) for c in columns} for row in batch.players.values()]
        for row in rows:
            row["last_seen"] = row["last_seen"] or ""
        stmt = insert(tables.players)
        newer = stmt.excluded.last_seen >= func.coalesce(tables.players.c.last_seen, "")
        set_: dict[str, Any] = {
            c: func.coalesce(getattr(stmt.excluded, c), getattr(tables.players.c, c))
            for c in columns
            if c not in ("id", "team_id", "last_seen")
        }
        set_["team_id"] = case(
            (newer, func.coalesce(stmt.excluded.team_id, tables.players.c.team_id)), else_=tables.players.c.team_id
        )
        set_["last_seen"] = case((newer, stmt.excluded.last_seen), else_=tables.players.c.last_seen)
        conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=set_), rows)
    if batch.stats:
        columns = [c.name for c in tables.stats.columns]
        rows = [{c: row.get(c) for c in columns} for row in batch.stats.values()]
        conn.execute(insert(tables.stats).prefix_with("OR REPLACE"), rows)


def bundled_sample() -> Path:
    """The small real subset shipped with the package (2023-24 box scores of a few teams' games)."""
    return Path(str(resources.files("plugkit.plugins.sports") / "data" / BUNDLED_SAMPLE))


def ensure_dataset(db_path: Path) -> bool:
    """Build the dataset from the bundled sample when `db_path` holds none yet; True when it built one.

    The sample is imported into a temporary file that is then renamed into place, so concurrent workers
    never see a half-built database."""
    if db_path.exists() and _has_games(db_path):
        return False
    db_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".sports-", suffix=".db", dir=db_path.parent)
    os.close(fd)
    try:
        import_files([bundled_sample()], Path(tmp))
        if db_path.exists() and _has_games(db_path):
            return False
        os.replace(tmp, db_path)
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _has_games(db_path: Path) -> bool:
    engine = create_engine(f"sqlite:///{db_path}")
    try:
        with engine.connect() as conn:
            ensure_schema(conn)
            conn.commit()
            return conn.execute(select(func.count()).select_from(tables.games)).scalar_one() > 0
    finally:
        engine.dispose()
