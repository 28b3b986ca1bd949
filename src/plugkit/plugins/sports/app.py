"""The sports plugin's routes and app: the example's API over the local dataset or the balldontlie API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from plugkit.app import PluginInfo, create_plugin_app
from plugkit.auth.factory import build_auth_method
from plugkit.errors import ErrorDetail
from plugkit.health import add_readiness_check
from plugkit.manifest import Api, Manifest
from plugkit.plugins.sports.backend import SportsBackend, SportsBackendError
from plugkit.plugins.sports.balldontlie import BalldontlieBackend
from plugkit.plugins.sports.importer import ensure_dataset
from plugkit.plugins.sports.local import LocalBackend
from plugkit.plugins.sports.models import (
    GameFilter,
    GameList,
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
    EndDate,
    GameIds,
    Limit,
    PlayerIds,
    Postseason,
    Seasons,
    StartDate,
    TeamIds,
    check_dates,
)
from plugkit.plugins.sports.settings import SportsSettings
from plugkit.settings import load_settings
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


def sports_manifest() -> Manifest:
    return Manifest(
        name_for_human="Sports Stats",
        name_for_model="sportsstats",
        description_for_human="Get current and historical stats for NBA players, teams and games.",
        description_for_model=DESCRIPTION_FOR_MODEL,
        api=Api(url="PLUGIN_HOSTNAME/openapi.yaml"),
        logo_url="PLUGIN_HOSTNAME/logo.png",
        contact_email="legal@plugkit.dev",
        legal_info_url="PLUGIN_HOSTNAME/legal",
    )


async def get_backend(request: Request) -> SportsBackend:
    return request.app.state.backend  # type: ignore[no-any-return]


BackendDep = Annotated[SportsBackend, Depends(get_backend)]
L = TypeVar("L", TeamList, PlayerList, GameList, StatList, SeasonAverageList)


def capped(request: Request, response: L) -> L:
    """Leave out the last results when the whole answer would pass the model host's size limit, and say so."""
    budget = request.app.state.settings.max_response_chars - RESPONSE_MARGIN
    items: list[BaseModel] = list(response.data)
    size, kept = 0, 0
    for item in items:
        size += len(item.model_dump_json()) + 1
        if size > budget:
            break
        kept += 1
    if kept < len(items):
        response.data = response.data[:kept]
        response.meta.truncated = True
        response.meta.note = (
            f"Showing {kept} of {len(items)} results: the rest were left out to keep the response under "
            f"{request.app.state.settings.max_response_chars} characters. Ask for fewer or narrow the filters."
        )
    return response


router = APIRouter()
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
    team_ids: TeamIds = None,
    limit: Limit = 25,
) -> PlayerList:
    """Find players whose first or last name contains the query, with their ids and latest team."""
    filters = PlayerFilter(search=(query or "").strip() or None, team_ids=tuple(team_ids or ()))
    return capped(request, PlayerList(data=await backend.players(filters, limit)))


@router.get(
    "/teams",
    operation_id="getTeams",
    summary="Retrieve all NBA teams. Display results using markdown tables.",
    response_model=TeamList,
    responses=UPSTREAM_ERRORS,
)
async def get_teams(request: Request, backend: BackendDep) -> TeamList:
    """List every team with its id, city, conference and division."""
    return capped(request, TeamList(data=await backend.teams()))


@router.get(
    "/games",
    operation_id="getGames",
    summary="Get games with their scores, filtered by season, team and date. Display results using markdown tables.",
    response_model=GameList,
    responses=UPSTREAM_ERRORS,
)
async def get_games(
    request: Request,
    backend: BackendDep,
    limit: Limit = 25,
    seasons: Seasons = None,
    team_ids: TeamIds = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    postseason: Postseason = None,
) -> GameList:
    """Get games, oldest first, with home and visitor teams and final scores."""
    check_dates(start_date, end_date)
    filters = GameFilter(
        seasons=tuple(seasons or ()),
        team_ids=tuple(team_ids or ()),
        start_date=start_date,
        end_date=end_date,
        postseason=postseason,
    )
    return capped(request, GameList(data=await backend.games(filters, limit)))


@router.get(
    "/stats",
    operation_id="getStats",
    summary="Get players' box-score stats per game. Display results using markdown tables.",
    response_model=StatList,
    responses=UPSTREAM_ERRORS,
)
async def get_stats(
    request: Request,
    backend: BackendDep,
    limit: Limit = 25,
    player_ids: PlayerIds = None,
    game_ids: GameIds = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    seasons: Seasons = None,
    postseason: Postseason = None,
) -> StatList:
    """Get box-score lines (points, rebounds, assists and more) per player per game, oldest game first."""
    check_dates(start_date, end_date)
    filters = StatFilter(
        player_ids=tuple(player_ids or ()),
        game_ids=tuple(game_ids or ()),
        seasons=tuple(seasons or ()),
        start_date=start_date,
        end_date=end_date,
        postseason=postseason,
    )
    return capped(request, StatList(data=await backend.stats(filters, limit)))


@router.get(
    "/season_averages",
    operation_id="getSeasonAverages",
    summary="Get players' per-game averages for one season. Display results using markdown tables.",
    response_model=SeasonAverageList,
    responses=UPSTREAM_ERRORS,
)
async def get_season_averages(
    request: Request,
    backend: BackendDep,
    season: Annotated[int, Query(ge=1946, le=2100, description="The year the season started: 2023 is 2023-24.")],
    player_ids: Annotated[
        list[Annotated[int, Query(ge=1, le=MAX_ID)]],
        Query(min_length=1, max_length=MAX_IDS, description="Player ids, as /players finds them."),
    ],
) -> SeasonAverageList:
    """Get each player's games played and per-game averages (points, rebounds, assists...) in a regular season."""
    return capped(request, SeasonAverageList(data=await backend.season_averages(season, tuple(player_ids))))


def build_backend(settings: SportsSettings) -> tuple[SportsBackend, list[Callable[[], Awaitable[None]]]]:
    """The configured backend, and the startup hooks it needs."""
    if settings.sports_backend == "balldontlie":
        if settings.balldontlie_key() is None:
            log.warning("no balldontlie API key is set (PLUGKIT_BALLDONTLIE_API_KEY): the API will likely refuse")
        return BalldontlieBackend.from_settings(settings), []
    path = settings.dataset_path()
    local = LocalBackend(Database(f"sqlite+aiosqlite:///{path}"))

    async def prepare() -> None:
        if await asyncio.to_thread(ensure_dataset, path):
            log.info("no dataset at %s yet: built it from the bundled 2023-24 sample", path)

    return local, [prepare]


def create_app(settings: SportsSettings | None = None) -> FastAPI:
    """The sports plugin app (settings from the environment when none are given)."""
    settings = settings or load_settings(SportsSettings)
    auth_database = Database(settings.database_url_for("sports_auth"))
    auth = build_auth_method(settings, auth_database)
    backend, hooks = build_backend(settings)

    async def startup() -> None:
        await auth_database.create_all(*auth.metadata())
        for hook in hooks:
            await hook()

    info = PluginInfo(
        manifest=sports_manifest(),
        title="Sports Stats Plugin",
        description="NBA players, teams, games, box-score stats and season averages.",
        logo_letter="S",
        logo_rgb=(200, 90, 30),
        legal_text="This plugin serves public NBA statistics. It keeps no data about its users.",
    )
    app = create_plugin_app(
        info,
        [router],
        settings,
        auth,
        database=auth_database,
        on_startup=[startup],
        on_shutdown=[backend.close, auth_database.dispose],
    )

    @app.exception_handler(SportsBackendError)
    async def backend_error(_request: Request, exc: SportsBackendError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    app.add_middleware(BracketArrays)
    app.state.backend = backend
    if isinstance(backend, LocalBackend):
        local = backend

        async def dataset_ready() -> str | None:
            await local.db.ping()
            return None

        add_readiness_check(app, "dataset", dataset_ready)
    return app
