"""Season averages, derived from the stat lines when they are written: the table `season_averages`.

A player's averages in a season are per-game means of the box scores (percentages made over attempted, on the
season's totals), the answer of /season_averages. They are computed in the transaction that writes the stat lines
(the importer, and the migration that added the table), so a reader never sees averages of other box scores than
the ones stored, and a question reads one row a player instead of summing a season of box scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select

from plugkit.plugins.sports import tables

S, G, A = tables.stats, tables.games, tables.season_averages
PERCENTAGES = (("fgm", "fga", "fg_pct"), ("fg3m", "fg3a", "fg3_pct"), ("ftm", "fta", "ft_pct"))
BATCH = 500  # ids per IN list (SQLite allows 32,766 parameters; PostgreSQL more)


def format_minutes(minutes: float | None) -> str | None:
    """Minutes as a number, as MM:SS."""
    if minutes is None:
        return None
    total = round(minutes * 60)
    return f"{total // 60}:{total % 60:02d}"


def averages_row(season: int, postseason: bool, r: Mapping[Any, Any]) -> dict[str, Any]:
    """One row of `season_averages` from the sums and means of a player's stat lines (see `_aggregate`)."""
    row: dict[str, Any] = {
        "season": season,
        "postseason": postseason,
        "player_id": r["player_id"],
        "games_played": r["games_played"],
        "min": format_minutes(r["minutes"]),
    }
    for field in tables.COUNT_FIELDS:
        row[field] = None if r[field] is None else round(r[field], 2)
    for made, attempted, pct in PERCENTAGES:
        total = r[f"sum_{attempted}"]
        row[pct] = round(r[f"sum_{made}"] / total, 3) if total else None
    return row


def _aggregate(seasons: list[int] | None) -> Any:
    """Each (season, postseason, player)'s games, means and made/attempted sums, of `seasons` (None: all)."""
    query = (
        select(
            G.c.season,
            G.c.postseason,
            S.c.player_id,
            func.count(S.c.id).label("games_played"),
            func.avg(S.c.minutes).label("minutes"),
            *(func.avg(S.c[f]).label(f) for f in tables.COUNT_FIELDS),
            *(func.sum(S.c[f]).label(f"sum_{f}") for made, attempted, _ in PERCENTAGES for f in (made, attempted)),
        )
        .join(G, G.c.id == S.c.game_id)
        .group_by(G.c.season, G.c.postseason, S.c.player_id)
    )
    return query if seasons is None else query.where(G.c.season.in_(seasons))


def seasons_of_games(conn: Connection, game_ids: Iterable[int]) -> set[int]:
    """The seasons the stored games `game_ids` belong to."""
    ids, seasons = sorted(set(game_ids)), set[int]()
    for start in range(0, len(ids), BATCH):
        chosen = ids[start : start + BATCH]
        seasons.update(conn.execute(select(G.c.season).distinct().where(G.c.id.in_(chosen))).scalars())
    return seasons


def refresh(conn: Connection, seasons: Iterable[int] | None = None) -> int:
    """Recompute the averages of `seasons` (None: every season) from the stored stat lines, in the caller's
    transaction; the number of rows written."""
    chosen = None if seasons is None else sorted(set(seasons))
    if chosen == []:
        return 0
    rows = [averages_row(r["season"], bool(r["postseason"]), r) for r in conn.execute(_aggregate(chosen)).mappings()]
    conn.execute(delete(A) if chosen is None else delete(A).where(A.c.season.in_(chosen)))
    if rows:
        conn.execute(insert(A), rows)
    return len(rows)


__all__ = ["averages_row", "format_minutes", "refresh", "seasons_of_games"]
