"""The sports plugin's routes and app: the example's API over the local dataset or the balldontlie API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from pydantic_core import to_json

from plugkit.errors import ErrorDetail
from plugkit.hints import reaching_remote, tool_hints
from plugkit.plugin import Plugin, PluginContext
from plugkit.plugins.sports.backend import SportsBackend, SportsBackendError
from plugkit.plugins.sports.balldontlie import BalldontlieBackend
from plugkit.plugins.sports.importer import ensure_dataset
from plugkit.plugins.sports.local import LocalBackend, Row
from plugkit.plugins.sports.models import (
    GameFilter,
    GameList,
    Meta,
    PlayerFilter,
    PlayerList,
    SeasonAverageList,
    StatFilter,
    StatList,
    TeamList,
)
from plugkit.plugins.sports.params import (
    MAX_ID,
    MAX_IDS,
    BracketArrays,
    Cursor,
    GameFilterDep,
    Limit,
    PerPage,
    PlayerIds,
    StatFilterDep,
    TeamIds,
    known_query_only,
)
from plugkit.plugins.sports.settings import SportsSettings
from plugkit.storage import Database

log = logging.getLogger("plugkit.sports")

DESCRIPTION_FOR_MODEL = (
    "Get current and historical stats for NBA players, teams and games. A season is named by the year it "
    "started: 2023 is the 2023-24 season. Find a player's id with /players (search by first or last name) before "
    "asking /stats or /season_averages, and a team's id with /teams before filtering games by team. When "
    "meta.truncated is true, say that the list is partial and narrow the filters. Display results using markdown "
    "tables."
)
RESPONSE_MARGIN = 2_000  # room for the envelope and serialisation differences


async def get_backend(request: Request) -> SportsBackend:
    return request.app.state.backend  # type: ignore[no-any-return]


BackendDep = Annotated[SportsBackend, Depends(get_backend)]
Item = BaseModel | Row


def answered(request: Request, data: Sequence[Item], offset: int | None = None, limit: int | None = None) -> Response:
    """The answer `{data, meta}` as JSON, serialised once (the route returns it as is; its response_model declares
    the shape, which the items, models or rows of their fields, already have). With `limit`, `data` holds up to
    limit + 1 results from `offset`: `limit` are kept and meta.next_cursor (balldontlie's paging) is set when more
    follow. The last results are left out, and the answer says so, when the whole would pass the model host's size
    limit."""
    meta = Meta()
    if limit is not None:
        if len(data) > limit:
            data = data[:limit]
            if offset is not None:
                meta.next_cursor = offset + limit
        meta.per_page = limit
    body = to_json({"data": data, "meta": meta})  # once, unless the answer is cut below
    max_chars = request.app.state.settings.max_response_chars
    if len(body) > max_chars - RESPONSE_MARGIN:  # bytes: never fewer than characters
        size, kept = 0, 0
        for item in data:
            size += len(to_json(item)) + 1
            if size > max_chars - RESPONSE_MARGIN:
                break
            kept += 1
        if kept < len(data):
            meta.truncated = True
            meta.note = (
                f"Showing {kept} of {len(data)} results: the rest were left out to keep the response under "
                f"{max_chars} characters. Ask for fewer or narrow the filters."
            )
            if limit is not None and offset is not None:
                meta.next_cursor = offset + kept
            body = to_json({"data": data[:kept], "meta": meta})
    return Response(body, media_type="application/json")


# The local dataset answers with rows, serialised as they are (building and validating a model per row cost about a
# third of an uncached read); other backends with their models.
async def _players(backend: SportsBackend, filters: PlayerFilter, limit: int, offset: int) -> Sequence[Item]:
    if isinstance(backend, LocalBackend):
        return await backend.player_rows(filters, limit, offset)
    return await backend.players(filters, limit, offset)


async def _games(backend: SportsBackend, filters: GameFilter, limit: int, offset: int) -> Sequence[Item]:
    if isinstance(backend, LocalBackend):
        return await backend.game_rows(filters, limit, offset)
    return await backend.games(filters, limit, offset)


async def _stats(backend: SportsBackend, filters: StatFilter, limit: int, offset: int) -> Sequence[Item]:
    if isinstance(backend, LocalBackend):
        return await backend.stat_rows(filters, limit, offset)
    return await backend.stats(filters, limit, offset)


router = APIRouter(dependencies=[Depends(known_query_only)])
UPSTREAM_ERRORS: dict[int | str, dict[str, object]] = {
    502: {"model": ErrorDetail, "description": "The upstream API failed or refused (balldontlie backend)"},
    504: {"model": ErrorDetail, "description": "The upstream API did not answer in time (balldontlie backend)"},
}


@router.get(
    "/players",
    operation_id="getPlayers",
    summary="Find players by first or last name. Display results using markdown tables.",
    response_model=PlayerList,
    responses=UPSTREAM_ERRORS,
    openapi_extra=tool_hints(title="Find players", read_only=True),
)
async def get_players(
    request: Request,
    backend: BackendDep,
    query: Annotated[
        str | None,
        Query(
            max_length=100,
            pattern=r"^[^\x00-\x1f\x7f]*$",
            description="Part of the player's first or last name, e.g. 'lebron' (no control characters).",
        ),
    ] = None,
    search: Annotated[
        str | None,
        Query(max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$", description="balldontlie's name for query."),
    ] = None,
    team_ids: TeamIds = None,
    player_ids: PlayerIds = None,
    limit: Limit = 25,
    per_page: PerPage = None,
    cursor: Cursor = None,
) -> Response:
    """Find players whose first or last name contains the query, with their ids and latest team."""
    text = (query or search or "").strip() or None
    filters = PlayerFilter(search=text, team_ids=tuple(team_ids or ()), player_ids=tuple(player_ids or ()))
    limit, offset = per_page or limit, cursor or 0
    rows = await _players(backend, filters, limit + 1, offset)
    return answered(request, rows, offset, limit)


@router.get(
    "/teams",
    operation_id="getTeams",
    summary="Retrieve all NBA teams. Display results using markdown tables.",
    response_model=TeamList,
    responses=UPSTREAM_ERRORS,
    openapi_extra=tool_hints(title="List teams", read_only=True),
)
async def get_teams(request: Request, backend: BackendDep) -> Response:
    """List every team with its id, city, conference and division."""
    return answered(request, await backend.teams())


@router.get(
    "/games",
    operation_id="getGames",
    summary="Get games with their scores, filtered by season, team and date. Display results using markdown tables.",
    response_model=GameList,
    responses=UPSTREAM_ERRORS,
    openapi_extra=tool_hints(title="Find games", read_only=True),
)
async def get_games(
    request: Request,
    backend: BackendDep,
    filters: GameFilterDep,
    limit: Limit = 25,
    per_page: PerPage = None,
    cursor: Cursor = None,
) -> Response:
    """Get games, oldest first, with home and visitor teams and final scores."""
    limit, offset = per_page or limit, cursor or 0
    return answered(request, await _games(backend, filters, limit + 1, offset), offset, limit)


@router.get(
    "/stats",
    operation_id="getStats",
    summary="Get players' box-score stats per game. Display results using markdown tables.",
    response_model=StatList,
    responses=UPSTREAM_ERRORS,
    openapi_extra=tool_hints(title="Get box-score stats", read_only=True),
)
async def get_stats(
    request: Request,
    backend: BackendDep,
    filters: StatFilterDep,
    limit: Limit = 25,
    per_page: PerPage = None,
    cursor: Cursor = None,
) -> Response:
    """Get box-score lines (points, rebounds, assists and more) per player per game, oldest game first."""
    limit, offset = per_page or limit, cursor or 0
    return answered(request, await _stats(backend, filters, limit + 1, offset), offset, limit)


@router.get(
    "/season_averages",
    operation_id="getSeasonAverages",
    summary="Get players' per-game averages for one season. Display results using markdown tables.",
    response_model=SeasonAverageList,
    responses=UPSTREAM_ERRORS,
    openapi_extra=tool_hints(title="Get season averages", read_only=True),
)
async def get_season_averages(
    request: Request,
    backend: BackendDep,
    season: Annotated[int, Query(ge=1946, le=2100, description="The year the season started: 2023 is 2023-24.")],
    player_ids: Annotated[
        list[Annotated[int, Query(ge=1, le=MAX_ID)]],
        Query(min_length=1, max_length=MAX_IDS, description="Player ids, as /players finds them."),
    ],
) -> Response:
    """Get each player's games played and per-game averages (points, rebounds, assists...) in a regular season."""
    if isinstance(backend, LocalBackend):
        return answered(request, await backend.season_average_rows(season, tuple(player_ids)))
    return answered(request, await backend.season_averages(season, tuple(player_ids)))


def build_backend(settings: SportsSettings) -> tuple[SportsBackend, list[Callable[[], Awaitable[None]]]]:
    """The configured backend, and the startup hooks it needs."""
    if settings.sports_backend == "balldontlie":
        if settings.balldontlie_key() is None:
            log.warning("no balldontlie API key is set (PLUGKIT_BALLDONTLIE_API_KEY): the API will likely refuse")
        return BalldontlieBackend.from_settings(settings), []
    path = settings.dataset_path()
    local = LocalBackend(Database(f"sqlite+aiosqlite:///{path}"), cache_size=settings.cache_size)

    async def prepare() -> None:
        if await asyncio.to_thread(ensure_dataset, path):
            log.info("no dataset at %s yet: built it from the bundled 2023-24 sample", path)

    return local, [prepare]


async def backend_error(_request: Request, exc: SportsBackendError) -> JSONResponse:
    """An upstream failure, answered with its own status and message."""
    return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)


def setup(context: PluginContext) -> None:
    """The configured backend, opened at start-up and closed at shutdown; `key[]=v` arrays folded into `key=v`."""
    settings = context.settings
    assert isinstance(settings, SportsSettings)
    backend, hooks = build_backend(settings)
    for hook in hooks:
        context.on_startup(hook)
    context.on_shutdown(backend.close)
    context.add_exception_handler(SportsBackendError, backend_error)
    context.add_middleware(BracketArrays)
    context.state["backend"] = backend
    if settings.sports_backend == "balldontlie":
        context.routers[:] = [reaching_remote(router) for router in context.routers]
    if isinstance(backend, LocalBackend):
        local = backend

        async def dataset_ready() -> str | None:
            await local.db.ping()
            return None

        context.add_readiness_check("dataset", dataset_ready)


plugin = Plugin(
    "Sports Stats",
    "Get current and historical stats for NBA players, teams and games.",
    description_for_model=DESCRIPTION_FOR_MODEL,
    name_for_model="sportsstats",
    routers=[router],
    settings=SportsSettings,
    setup=setup,
    database="sports_auth",
    contact_email="legal@plugkit.dev",
    title="Sports Stats Plugin",
    logo_letter="S",
    logo_rgb=(200, 90, 30),
    legal_text="This plugin serves public NBA statistics. It keeps no data about its users.",
    options={
        "backend": "sports_backend",
        "upstream-url": "balldontlie_url",
        "api-key-file": "balldontlie_api_key_file",
    },
)


def create_app(settings: SportsSettings | None = None) -> FastAPI:
    """The sports plugin app (settings from the environment when none are given)."""
    return plugin.create_app(settings)
