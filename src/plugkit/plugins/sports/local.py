"""The local backend: the SQLite dataset built by `plugkit sports import` (or from the bundled sample)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import TypeAdapter
from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    bindparam,
    false,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

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
from plugkit.plugins.sports.names import PlayerNames
from plugkit.storage import Database, PreparedRead

T, P, G, S, A = tables.teams, tables.players, tables.games, tables.stats, tables.season_averages
TEAM_COLUMNS = tuple(Team.model_fields)
PLAYER_COLUMNS = tuple(f for f in Player.model_fields if f != "team")
GAME_COLUMNS = tuple(f for f in Game.model_fields if f not in ("home_team", "visitor_team"))
PLAYER_REF_COLUMNS, GAME_REF_COLUMNS = tuple(PlayerRef.model_fields), tuple(GameRef.model_fields)
STAT_LINE_COLUMNS = tuple(f for f in Stat.model_fields if f not in ("player", "team", "game"))  # a row's first columns
AVERAGE_COLUMNS = tuple(SeasonAverage.model_fields)
GAME_POSTSEASON, GAME_REF_POSTSEASON = GAME_COLUMNS.index("postseason"), GAME_REF_COLUMNS.index("postseason")
Row = dict[str, Any]  # an answer's item as JSON-ready values, keyed and ordered as its model's fields
SHAPES = 256  # query shapes kept compiled (each: which filters are present, how many values each list holds)
ZERO = literal_column("0", Integer)  # a constant in the text, not a parameter

TEAMS, PLAYERS, GAMES = TypeAdapter(list[Team]), TypeAdapter(list[Player]), TypeAdapter(list[Game])
STATS, AVERAGES = TypeAdapter(list[Stat]), TypeAdapter(list[SeasonAverage])


@dataclass(frozen=True)
class Shape:
    """A filtered listing's page (LIMIT :limit OFFSET :offset) and its count."""

    page: PreparedRead
    count: PreparedRead

    @classmethod
    def of(cls, query: Select[Any]) -> Shape:
        page = query.limit(bindparam("limit")).offset(bindparam("offset"))
        count = select(func.count()).select_from(query.order_by(None).subquery())
        return cls(PreparedRead.of(page), PreparedRead.of(count))


def _in(column: Any, name: str, n: int) -> ColumnElement[bool]:
    """`column IN (:name_0, ..., :name_<n-1>)`, the values bound by `_bind`; false for none (SQLAlchemy's own empty IN
    would add a parameter named as ours are)."""
    if n == 0:
        return false()
    return column.in_([bindparam(f"{name}_{i}") for i in range(n)])  # type: ignore[no-any-return]


def _bind(values: dict[str, Any], name: str, items: Iterable[Any]) -> None:
    for i, item in enumerate(items):
        values[f"{name}_{i}"] = item


class _found_at(FunctionElement[int]):
    """Where `text` first occurs in `column` (from 1; 0: nowhere): a substring test without a pattern to match, so
    nothing to escape, and on SQLite a third cheaper than LIKE '%text%' over the players' names."""

    type = Integer()
    inherit_cache = True

    def __init__(self, column: ColumnElement[str], text: BindParameter[str]) -> None:
        super().__init__(column, text)


@compiles(_found_at)
def _instr(element: _found_at, compiler: SQLCompiler, **kw: Any) -> str:
    return f"instr({compiler.process(element.clauses, **kw)})"


@compiles(_found_at, "postgresql")
def _strpos(element: _found_at, compiler: SQLCompiler, **kw: Any) -> str:
    return f"strpos({compiler.process(element.clauses, **kw)})"


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
    """Answers from the local dataset; `offset` and the `count_*` methods serve the upstream API's paging.

    Each query is a SQLAlchemy statement built once per shape. On SQLite it runs as its compiled text on the worker's
    own read connection (`Database.sqlite_reader`), rows read by position and validated into the answer's models in
    one call; on PostgreSQL the same statement runs through SQLAlchemy (`Database.run_read`)."""

    def __init__(self, database: Database, cache_size: int = 2048) -> None:
        self.db = database
        # Answers are kept until the dataset changes (SQLite's data_version moves when an import commits): a
        # repeated question costs one PRAGMA, not a query and the models built from it.
        self.answers = DatabaseCache(database, cache_size)
        # What is derived from the whole dataset, by name, with the data_version it was read at (see `_derived`).
        self._kept: dict[str, tuple[int | None, Any]] = {}

    async def _cached(self, key: tuple[Any, ...], compute: Callable[[], Awaitable[Answer]]) -> Answer:
        return await self.answers.get(key, compute)

    async def _rows(self, query: PreparedRead, values: dict[str, Any]) -> Sequence[Sequence[Any]]:
        return await query.rows(self.db, values)

    async def _count(self, query: PreparedRead, values: dict[str, Any]) -> int:
        return int((await self._rows(query, values))[0][0])

    async def _derived(self, name: str, build: Callable[[], Awaitable[Answer]]) -> Answer:
        """What `build` derives from the whole dataset, kept until the dataset changes (built again for each call on
        a database without a data_version). Only called within an answer-cached method, whose lookup has just read
        data_version."""
        version, kept = self.answers.version, self._kept.get(name)
        if kept is not None and version is not None and kept[0] == version:
            return kept[1]  # type: ignore[no-any-return]
        value = await build()
        self._kept[name] = (version, value)
        return value

    # teams
    async def _team_tables(self) -> tuple[dict[int, Team], dict[int, Row]]:
        """Every team by id, in the order of ids, as a model and as a row (shared by the answers that hold it): every
        answer's nested team is taken from them by id, a join in Python where SQLite's would fetch the same 30 rows'
        columns again for each row."""

        async def read() -> tuple[dict[int, Team], dict[int, Row]]:
            rows = [dict(zip(TEAM_COLUMNS, r, strict=True)) for r in await self._rows(TEAMS_QUERY, {})]
            teams = TEAMS.validate_python(rows)
            return {team.id: team for team in teams}, {row["id"]: row for row in rows}

        return await self._derived("teams", read)

    async def _teams(self) -> dict[int, Team]:
        return (await self._team_tables())[0]

    async def _team_rows(self) -> dict[int, Row]:
        return (await self._team_tables())[1]

    @_answer_cached
    async def teams(self) -> list[Team]:
        return list((await self._teams()).values())

    @_answer_cached
    async def team(self, team_id: int) -> Team | None:
        return (await self._teams()).get(team_id)

    # players
    async def players(self, filters: PlayerFilter, limit: int, offset: int = 0) -> list[Player]:
        return PLAYERS.validate_python(await self.player_rows(filters, limit, offset))

    @_answer_cached
    async def player_rows(self, filters: PlayerFilter, limit: int, offset: int = 0) -> list[Row]:
        """`players` as rows: each a dict of the Player answer's fields, in its order, with JSON's types."""
        found = await self._found_by_name(filters)
        if found is None:
            shape, values = _players(filters)
            rows: Sequence[Sequence[Any]] = await self._rows(shape.page, {**values, "limit": limit, "offset": offset})
        else:
            rows = found[offset : offset + limit]
        team, n = (await self._team_rows()).get, len(PLAYER_COLUMNS)
        players = []
        for r in rows:  # each row's fields filled in place: a dict merged into another costs a third more
            player = dict(zip(PLAYER_COLUMNS, r, strict=False))
            player["team"] = team(r[n])
            players.append(player)
        return players

    @_answer_cached
    async def count_players(self, filters: PlayerFilter) -> int:
        found = await self._found_by_name(filters)
        if found is not None:
            return len(found)
        shape, values = _players(filters)
        return await self._count(shape.count, values)

    async def _found_by_name(self, filters: PlayerFilter) -> list[Sequence[Any]] | None:
        """The rows of the players a name search finds (the players query's columns), in the answer's order, from
        the players kept in memory (`PlayerNames`, a few thousand rows); None when `filters` search no name or the
        database has no data_version to keep them by (PostgreSQL: the query tests every name)."""
        if not filters.search or self.answers.version is None:
            return None
        players = await self._derived("players", self._read_players)
        found = players.matching(normalise_name(filters.search).split())
        if filters.player_ids:
            wanted = set(filters.player_ids)
            found = [row for row in found if row[PLAYER_ID_AT] in wanted]
        if filters.team_ids:
            teams = set(filters.team_ids)
            found = [row for row in found if row[PLAYER_TEAM_AT] in teams]
        return found

    async def _read_players(self) -> PlayerNames:
        return PlayerNames.of(await self._rows(ALL_PLAYERS, {}), PLAYER_NAME_AT)

    # games
    async def games(self, filters: GameFilter, limit: int, offset: int = 0) -> list[Game]:
        return GAMES.validate_python(await self.game_rows(filters, limit, offset))

    @_answer_cached
    async def game_rows(self, filters: GameFilter, limit: int, offset: int = 0) -> list[Row]:
        """`games` as rows (see `player_rows`)."""
        shape, values = _games(filters)
        rows = await self._rows(shape.page, {**values, "limit": limit, "offset": offset})
        team, n = (await self._team_rows()).get, len(GAME_COLUMNS)
        games = []
        for r in rows:
            game = dict(zip(GAME_COLUMNS, r, strict=False))
            game["postseason"] = bool(r[GAME_POSTSEASON])  # SQLite's 0/1
            game["home_team"], game["visitor_team"] = team(r[n]), team(r[n + 1])
            games.append(game)
        return games

    @_answer_cached
    async def count_games(self, filters: GameFilter) -> int:
        shape, values = _games(filters)
        return await self._count(shape.count, values)

    # stats
    async def stats(self, filters: StatFilter, limit: int, offset: int = 0) -> list[Stat]:
        return STATS.validate_python(await self.stat_rows(filters, limit, offset))

    @_answer_cached
    async def stat_rows(self, filters: StatFilter, limit: int, offset: int = 0) -> list[Row]:
        """`stats` as rows (see `player_rows`)."""
        shape, values = _stats(filters)
        rows = await self._rows(shape.page, {**values, "limit": limit, "offset": offset})
        team, line, ref = (await self._team_rows()).get, len(STAT_LINE_COLUMNS), len(PLAYER_REF_COLUMNS)
        game = line + ref + 1
        postseason = game + GAME_REF_POSTSEASON
        stats = []
        for r in rows:
            stat = dict(zip(STAT_LINE_COLUMNS, r, strict=False))
            stat["player"] = dict(zip(PLAYER_REF_COLUMNS, r[line : line + ref], strict=True))
            stat["team"] = team(r[line + ref])
            ref_game = dict(zip(GAME_REF_COLUMNS, r[game:], strict=True))
            ref_game["postseason"] = bool(r[postseason])
            stat["game"] = ref_game
            stats.append(stat)
        return stats

    @_answer_cached
    async def count_stats(self, filters: StatFilter) -> int:
        shape, values = _stats(filters)
        return await self._count(shape.count, values)

    # season averages
    async def season_averages(
        self, season: int, player_ids: tuple[int, ...], postseason: bool = False
    ) -> list[SeasonAverage]:
        return AVERAGES.validate_python(await self.season_average_rows(season, player_ids, postseason))

    @_answer_cached
    async def season_average_rows(
        self, season: int, player_ids: tuple[int, ...], postseason: bool = False
    ) -> list[Row]:
        """`season_averages` as rows (see `player_rows`): the rows the importer derived from the stat lines, in the
        order of player ids."""
        values: dict[str, Any] = {"season": season, "postseason": postseason}
        _bind(values, "player_id", player_ids)
        return [
            dict(zip(AVERAGE_COLUMNS, r, strict=True))
            for r in await self._rows(_averages_query(len(player_ids)), values)
        ]

    async def close(self) -> None:
        await self.db.dispose()


TEAMS_QUERY = PreparedRead.of(select(*(T.c[c] for c in TEAM_COLUMNS)).order_by(T.c.id))
PLAYER_ORDER = (P.c.last_name, P.c.first_name, P.c.id)
# Every player as the players query reads them (its columns, then the team's id), and the search name.
ALL_PLAYERS = PreparedRead.of(
    select(*(P.c[c] for c in PLAYER_COLUMNS), P.c.team_id, P.c.search_name).order_by(*PLAYER_ORDER)
)
PLAYER_ID_AT, PLAYER_TEAM_AT, PLAYER_NAME_AT = PLAYER_COLUMNS.index("id"), len(PLAYER_COLUMNS), len(PLAYER_COLUMNS) + 1


def _players(filters: PlayerFilter) -> tuple[Shape, dict[str, Any]]:
    """The shape of the players query `filters` ask for, and its values."""
    words = normalise_name(filters.search).split() if filters.search else []
    values: dict[str, Any] = {}
    _bind(values, "word", words)
    _bind(values, "player_id", filters.player_ids)
    _bind(values, "team_id", filters.team_ids)
    return _players_shape(len(words), len(filters.player_ids), len(filters.team_ids)), values


@functools.lru_cache(maxsize=SHAPES)
def _players_shape(words: int, player_ids: int, team_ids: int) -> Shape:
    query = select(*(P.c[c] for c in PLAYER_COLUMNS), P.c.team_id)
    query = query.where(*(_found_at(P.c.search_name, bindparam(f"word_{i}")) > ZERO for i in range(words)))
    if player_ids:
        query = query.where(_in(P.c.id, "player_id", player_ids))
    if team_ids:
        query = query.where(_in(P.c.team_id, "team_id", team_ids))
    return Shape.of(query.order_by(*PLAYER_ORDER))


@dataclass(frozen=True)
class GameShape:
    """Which game filters are present, and how many values each list holds."""

    seasons: int = 0
    team_ids: int = 0
    game_ids: int = 0
    dates: int = 0
    start_date: bool = False
    end_date: bool = False
    postseason: bool | None = None


def _game_shape(filters: GameFilter | StatFilter, teams_and_games: bool) -> tuple[GameShape, dict[str, Any]]:
    """The games `filters` ask for, as a shape and its values."""
    values: dict[str, Any] = {}
    _bind(values, "season", filters.seasons)
    _bind(values, "date", (d.isoformat() for d in filters.dates))
    if filters.start_date:
        values["start_date"] = filters.start_date.isoformat()
    if filters.end_date:
        values["end_date"] = filters.end_date.isoformat()
    if teams_and_games:  # on games; stats filter their own team and game columns
        _bind(values, "game_team_id", filters.team_ids)
        _bind(values, "game_id", filters.game_ids)
    shape = GameShape(
        seasons=len(filters.seasons),
        team_ids=len(filters.team_ids) if teams_and_games else 0,
        game_ids=len(filters.game_ids) if teams_and_games else 0,
        dates=len(filters.dates),
        start_date=filters.start_date is not None,
        end_date=filters.end_date is not None,
        postseason=filters.postseason,
    )
    return shape, values


def _game_conditions(shape: GameShape) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if shape.seasons:
        conditions.append(_in(G.c.season, "season", shape.seasons))
    if shape.team_ids:
        teams: list[Any] = [bindparam(f"game_team_id_{i}") for i in range(shape.team_ids)]
        conditions.append(or_(G.c.home_team_id.in_(teams), G.c.visitor_team_id.in_(teams)))
    if shape.game_ids:
        conditions.append(_in(G.c.id, "game_id", shape.game_ids))
    if shape.dates:
        conditions.append(_in(G.c.date, "date", shape.dates))
    if shape.start_date:
        conditions.append(G.c.date >= bindparam("start_date"))
    if shape.end_date:
        conditions.append(G.c.date <= bindparam("end_date"))
    if shape.postseason is not None:
        conditions.append(G.c.postseason.is_(shape.postseason))
    return conditions


def _games(filters: GameFilter) -> tuple[Shape, dict[str, Any]]:
    """The shape of the games query `filters` ask for, and its values."""
    shape, values = _game_shape(filters, teams_and_games=True)
    return _games_shape(shape), values


@functools.lru_cache(maxsize=SHAPES)
def _games_shape(shape: GameShape) -> Shape:
    query = select(*(G.c[c] for c in GAME_COLUMNS), G.c.home_team_id, G.c.visitor_team_id)
    return Shape.of(query.where(*_game_conditions(shape)).order_by(G.c.date, G.c.id))


def _stats(filters: StatFilter) -> tuple[Shape, dict[str, Any]]:
    """The shape of the stats query `filters` ask for, and its values."""
    games, values = _game_shape(filters, teams_and_games=False)
    _bind(values, "player_id", filters.player_ids)
    _bind(values, "game_id", filters.game_ids)
    _bind(values, "team_id", filters.team_ids)
    return _stats_shape(games, len(filters.player_ids), len(filters.game_ids), len(filters.team_ids)), values


@functools.lru_cache(maxsize=SHAPES)
def _stats_shape(games: GameShape, player_ids: int, game_ids: int, team_ids: int) -> Shape:
    # The columns in the order of the Stat answer: its line, then player, team and game (rows are read by position).
    query = (
        select(
            *(S.c[c] for c in STAT_LINE_COLUMNS),
            *(S.c.player_id if c == "id" else P.c[c].label(f"player_{c}") for c in PLAYER_REF_COLUMNS),
            S.c.team_id,
            *(S.c.game_id if c == "id" else G.c[c] for c in GAME_REF_COLUMNS),
        )
        .join(P, P.c.id == S.c.player_id)
        .join(G, G.c.id == S.c.game_id)
    )
    conditions = _game_conditions(games)
    if player_ids:
        conditions.append(_in(S.c.player_id, "player_id", player_ids))
    if game_ids:
        conditions.append(_in(S.c.game_id, "game_id", game_ids))
    if team_ids:
        conditions.append(_in(S.c.team_id, "team_id", team_ids))
    return Shape.of(query.where(*conditions).order_by(G.c.date, S.c.game_id, S.c.team_id, S.c.id))


@functools.lru_cache(maxsize=SHAPES)
def _averages_query(player_ids: int) -> PreparedRead:
    query = select(*(A.c[c] for c in AVERAGE_COLUMNS)).where(
        A.c.season == bindparam("season"),
        A.c.postseason == bindparam("postseason"),
        _in(A.c.player_id, "player_id", player_ids),
    )
    return PreparedRead.of(query.order_by(A.c.player_id))


__all__ = ["LocalBackend"]
