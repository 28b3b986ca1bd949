"""The local backend: the SQLite dataset built by `plugkit sports import` (or from the bundled sample)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.sql import Subquery

from plugkit.cache import DatabaseCache
from plugkit.plugins.sports import tables
from plugkit.plugins.sports.importer import normalise_name
from plugkit.plugins.sports.models import (
    Game,
    GameFilter,
    GameRef,
    Player,
    PlayerFilter,
    PlayerRef,
    SeasonAverage,
    Stat,
    StatFilter,
    Team,
)
from plugkit.storage import Database

T, P, G, S = tables.teams, tables.players, tables.games, tables.stats
HOME, VISITOR = T.alias("home"), T.alias("visitor")
TEAM_COLUMNS = ("id", "conference", "division", "city", "name", "full_name", "abbreviation")


TEAM_KEYS = {prefix: tuple((c, f"{prefix}{c}") for c in TEAM_COLUMNS) for prefix in ("", "tm_", "home_", "visitor_")}


def _team(row: dict[str, Any], prefix: str) -> Team | None:
    if row[f"{prefix}id"] is None:
        return None
    return Team(**{column: row[key] for column, key in TEAM_KEYS[prefix]})


def _team_columns(table: Any, prefix: str) -> list[Any]:
    return [table.c[c].label(f"{prefix}{c}") for c in TEAM_COLUMNS]


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _format_minutes(minutes: float | None) -> str | None:
    if minutes is None:
        return None
    total = round(minutes * 60)
    return f"{total // 60}:{total % 60:02d}"


Answer = TypeVar("Answer")
Method = TypeVar("Method", bound=Callable[..., Awaitable[Any]])


def _answer_cached(method: Method) -> Method:
    """The method's answers kept in the backend's answer cache, keyed by its arguments."""

    @functools.wraps(method)
    async def cached(self: LocalBackend, *args: Any, **kwargs: Any) -> Any:
        key = (method.__name__, *args, *sorted(kwargs.items()))
        return await self._cached(key, lambda: method(self, *args, **kwargs))

    return cached  # type: ignore[return-value]


class LocalBackend:
    """Answers from the local dataset; `offset` and the `count_*` methods serve the upstream API's paging."""

    def __init__(self, database: Database, cache_size: int = 2048) -> None:
        self.db = database
        # Answers are kept until the dataset changes (SQLite's data_version moves when an import commits): a
        # repeated question costs one PRAGMA, not a query and the models built from it.
        self.answers = DatabaseCache(database, cache_size)

    async def _cached(self, key: tuple[Any, ...], compute: Callable[[], Awaitable[Answer]]) -> Answer:
        return await self.answers.get(key, compute)

    async def _all(self, query: Select[Any]) -> list[dict[str, Any]]:
        # Core on the process's own SQLite connection (Database.run_read): no thread hop, no ORM session per query.
        # Rows as dicts: one call per row, where a Row's attribute lookups cost a call per field.
        return await self.db.run_read(lambda conn: [row._asdict() for row in conn.execute(query)])

    async def _count(self, query: Select[Any]) -> int:
        sub: Subquery = query.order_by(None).subquery()
        count = select(func.count()).select_from(sub)
        return await self.db.run_read(lambda conn: int(conn.execute(count).scalar_one()))

    # teams
    @_answer_cached
    async def teams(self) -> list[Team]:
        rows = await self._all(select(*_team_columns(T, "")).order_by(T.c.id))
        return [t for t in (_team(r, "") for r in rows) if t is not None]

    @_answer_cached
    async def team(self, team_id: int) -> Team | None:
        rows = await self._all(select(*_team_columns(T, "")).where(T.c.id == team_id))
        return _team(rows[0], "") if rows else None

    # players
    def _players_query(self, filters: PlayerFilter) -> Select[Any]:
        query = select(P, *_team_columns(T, "tm_")).outerjoin(T, T.c.id == P.c.team_id)
        if filters.search:
            words = normalise_name(filters.search).split()
            query = query.where(*(P.c.search_name.like(_like(w), escape="\\") for w in words))
        if filters.player_ids:
            query = query.where(P.c.id.in_(filters.player_ids))
        if filters.team_ids:
            query = query.where(P.c.team_id.in_(filters.team_ids))
        return query.order_by(P.c.last_name, P.c.first_name, P.c.id)

    @_answer_cached
    async def players(self, filters: PlayerFilter, limit: int, offset: int = 0) -> list[Player]:
        rows = await self._all(self._players_query(filters).limit(limit).offset(offset))
        fields = [c.name for c in P.columns if c.name not in ("search_name", "team_id", "last_seen")]
        return [Player(**{f: r[f] for f in fields}, team=_team(r, "tm_")) for r in rows]

    @_answer_cached
    async def count_players(self, filters: PlayerFilter) -> int:
        return await self._count(self._players_query(filters))

    # games
    def _games_query(self, filters: GameFilter) -> Select[Any]:
        query = (
            select(G, *_team_columns(HOME, "home_"), *_team_columns(VISITOR, "visitor_"))
            .outerjoin(HOME, HOME.c.id == G.c.home_team_id)
            .outerjoin(VISITOR, VISITOR.c.id == G.c.visitor_team_id)
        )
        return query.where(*_game_conditions(filters)).order_by(G.c.date, G.c.id)

    @_answer_cached
    async def games(self, filters: GameFilter, limit: int, offset: int = 0) -> list[Game]:
        rows = await self._all(self._games_query(filters).limit(limit).offset(offset))
        return [
            Game(
                id=r["id"],
                date=r["date"],
                season=r["season"],
                status=r["status"],
                period=r["period"],
                time=r["time"],
                postseason=bool(r["postseason"]),
                home_team_score=r["home_team_score"],
                visitor_team_score=r["visitor_team_score"],
                home_team=_team(r, "home_"),
                visitor_team=_team(r, "visitor_"),
            )
            for r in rows
        ]

    @_answer_cached
    async def count_games(self, filters: GameFilter) -> int:
        return await self._count(self._games_query(filters))

    # stats
    def _stats_query(self, filters: StatFilter) -> Select[Any]:
        query = (
            select(
                S,
                P.c.first_name,
                P.c.last_name,
                P.c.position,
                P.c.team_id.label("player_team_id"),
                G.c.date,
                G.c.season,
                G.c.status,
                G.c.postseason,
                G.c.home_team_id,
                G.c.visitor_team_id,
                G.c.home_team_score,
                G.c.visitor_team_score,
                *_team_columns(T, "tm_"),
            )
            .join(P, P.c.id == S.c.player_id)
            .join(G, G.c.id == S.c.game_id)
            .outerjoin(T, T.c.id == S.c.team_id)
        )
        conditions = _game_conditions(
            GameFilter(
                seasons=filters.seasons,
                dates=filters.dates,
                start_date=filters.start_date,
                end_date=filters.end_date,
                postseason=filters.postseason,
            )
        )
        if filters.player_ids:
            conditions.append(S.c.player_id.in_(filters.player_ids))
        if filters.game_ids:
            conditions.append(S.c.game_id.in_(filters.game_ids))
        if filters.team_ids:
            conditions.append(S.c.team_id.in_(filters.team_ids))
        return query.where(*conditions).order_by(G.c.date, S.c.game_id, S.c.team_id, S.c.id)

    @_answer_cached
    async def stats(self, filters: StatFilter, limit: int, offset: int = 0) -> list[Stat]:
        rows = await self._all(self._stats_query(filters).limit(limit).offset(offset))
        return [
            Stat(
                id=r["id"],
                min=r["min"],
                **{f: r[f] for f in tables.STAT_FIELDS},
                player=PlayerRef(
                    id=r["player_id"],
                    first_name=r["first_name"],
                    last_name=r["last_name"],
                    position=r["position"],
                    team_id=r["player_team_id"],
                ),
                team=_team(r, "tm_"),
                game=GameRef(
                    id=r["game_id"],
                    date=r["date"],
                    season=r["season"],
                    status=r["status"],
                    postseason=bool(r["postseason"]),
                    home_team_id=r["home_team_id"],
                    visitor_team_id=r["visitor_team_id"],
                    home_team_score=r["home_team_score"],
                    visitor_team_score=r["visitor_team_score"],
                ),
            )
            for r in rows
        ]

    @_answer_cached
    async def count_stats(self, filters: StatFilter) -> int:
        return await self._count(self._stats_query(filters))

    # season averages
    @_answer_cached
    async def season_averages(
        self, season: int, player_ids: tuple[int, ...], postseason: bool = False
    ) -> list[SeasonAverage]:
        """Per-game averages from the stat lines; percentages are made over attempted, on the season's totals."""
        sums = {f: func.sum(S.c[f]).label(f"sum_{f}") for f in ("fgm", "fga", "fg3m", "fg3a", "ftm", "fta")}
        averages = [func.avg(S.c[f]).label(f) for f in tables.COUNT_FIELDS]
        query = (
            select(
                S.c.player_id,
                func.count(S.c.id).label("games_played"),
                func.avg(S.c.minutes).label("minutes"),
                *averages,
                *sums.values(),
            )
            .join(G, G.c.id == S.c.game_id)
            .where(G.c.season == season, G.c.postseason.is_(postseason), S.c.player_id.in_(player_ids))
            .group_by(S.c.player_id)
            .order_by(S.c.player_id)
        )
        result = []
        for r in await self._all(query):
            values: dict[str, Any] = {f: round(r[f], 2) for f in tables.COUNT_FIELDS if r[f] is not None}
            for made, attempted, pct in (
                ("fgm", "fga", "fg_pct"),
                ("fg3m", "fg3a", "fg3_pct"),
                ("ftm", "fta", "ft_pct"),
            ):
                a = r[f"sum_{attempted}"]
                values[pct] = round(r[f"sum_{made}"] / a, 3) if a else None
            result.append(
                SeasonAverage(
                    player_id=r["player_id"],
                    season=season,
                    games_played=r["games_played"],
                    min=_format_minutes(r["minutes"]),
                    **values,
                )
            )
        return result

    async def close(self) -> None:
        await self.db.dispose()


def _game_conditions(filters: GameFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.seasons:
        conditions.append(G.c.season.in_(filters.seasons))
    if filters.team_ids:
        conditions.append(or_(G.c.home_team_id.in_(filters.team_ids), G.c.visitor_team_id.in_(filters.team_ids)))
    if filters.game_ids:
        conditions.append(G.c.id.in_(filters.game_ids))
    if filters.dates:
        conditions.append(G.c.date.in_([d.isoformat() for d in filters.dates]))
    if filters.start_date:
        conditions.append(G.c.date >= filters.start_date.isoformat())
    if filters.end_date:
        conditions.append(G.c.date <= filters.end_date.isoformat())
    if filters.postseason is not None:
        conditions.append(G.c.postseason.is_(filters.postseason))
    return conditions


__all__ = ["LocalBackend"]
