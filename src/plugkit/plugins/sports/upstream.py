"""`plugkit serve sports-upstream`: the local dataset served in the balldontlie v1 API's shape.

It lets the balldontlie backend run against a real server here, and serves an imported dataset to other tools
that speak that API. With `upstream_faults` on (tests only), request headers inject failures:
`x-fault: 429*2` answers 429 to the first two requests carrying the same `x-fault-key`, `x-fault: 503*1` a 503,
`x-fault: delay:1500*1` answers the first one 1.5 s late; `x-fault-retry-after` sets the Retry-After header.
`GET /__faults/{key}` tells how many requests a key made.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from plugkit.plugins.sports.importer import ensure_dataset
from plugkit.plugins.sports.local import LocalBackend
from plugkit.plugins.sports.models import GameFilter, PlayerFilter, StatFilter
from plugkit.plugins.sports.params import (
    MAX_ID,
    MAX_IDS,
    BracketArrays,
    Dates,
    EndDate,
    GameIds,
    PlayerIds,
    Postseason,
    Seasons,
    StartDate,
    TeamIds,
    check_dates,
)
from plugkit.plugins.sports.settings import UpstreamSettings
from plugkit.settings import load_settings
from plugkit.storage import Database

Id = Annotated[int, Path(ge=1, le=MAX_ID)]
PerPage = Annotated[int, Query(ge=1, le=100, description="Results per page (at most 100).")]
Cursor = Annotated[int | None, Query(ge=0, description="meta.next_cursor of the previous page.")]
Page = Annotated[int | None, Query(ge=1, le=1_000_000, description="Legacy paging: the page number.")]


def get_paging(
    request: Request, per_page: PerPage = 25, cursor: Cursor = None, page: Page = None
) -> tuple[int, int | None, int | None]:
    """(per_page, cursor, page); a server set to legacy paging answers page 1 when no page was asked for."""
    if page is None and cursor is None and request.app.state.settings.upstream_legacy_paging:
        page = 1
    return per_page, cursor, page


PagingDep = Annotated[tuple[int, int | None, int | None], Depends(get_paging)]


async def get_local(request: Request) -> LocalBackend:
    return request.app.state.backend  # type: ignore[no-any-return]


LocalDep = Annotated[LocalBackend, Depends(get_local)]


def require_key(request: Request) -> None:
    """balldontlie's scheme: the key alone in the Authorization header."""
    expected: str | None = request.app.state.required_key
    if expected is None:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(401, "a valid API key is required in the Authorization header")


router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])


def _dump(items: Sequence[BaseModel]) -> list[dict[str, Any]]:
    return [item.model_dump(mode="json") for item in items]


async def _page(fetch: Any, count: Any, per_page: int, cursor: int | None, page: int | None) -> dict[str, Any]:
    """One page, in the legacy shape when `page` was asked for, else with a cursor."""
    if page is not None:
        total = await count()
        items = await fetch(per_page, (page - 1) * per_page)
        total_pages = max(1, -(-total // per_page))
        meta = {
            "total_pages": total_pages,
            "current_page": page,
            "next_page": page + 1 if page < total_pages else None,
            "per_page": per_page,
            "total_count": total,
        }
        return {"data": _dump(items), "meta": meta}
    offset = cursor or 0
    items = await fetch(per_page + 1, offset)
    more = len(items) > per_page
    meta = {"next_cursor": offset + per_page if more else None, "per_page": per_page}
    return {"data": _dump(items[:per_page]), "meta": meta}


@router.get("/teams", operation_id="listTeams")
async def list_teams(backend: LocalDep) -> dict[str, Any]:
    """All teams."""
    return {"data": _dump(await backend.teams()), "meta": {}}


@router.get("/teams/{team_id}", operation_id="getTeam")
async def get_team(team_id: Id, backend: LocalDep) -> dict[str, Any]:
    """One team."""
    team = await backend.team(team_id)
    if team is None:
        raise HTTPException(404, f"no team with id {team_id}")
    return {"data": team.model_dump(mode="json")}


@router.get("/players", operation_id="listPlayers")
async def list_players(
    backend: LocalDep,
    paging: PagingDep,
    search: Annotated[str | None, Query(max_length=100)] = None,
    player_ids: PlayerIds = None,
    team_ids: TeamIds = None,
) -> dict[str, Any]:
    """Players, searched in first or last name."""
    filters = PlayerFilter(search=search or None, player_ids=tuple(player_ids or ()), team_ids=tuple(team_ids or ()))
    return await _page(lambda n, o: backend.players(filters, n, o), lambda: backend.count_players(filters), *paging)


@router.get("/players/{player_id}", operation_id="getPlayer")
async def get_player(player_id: Id, backend: LocalDep) -> dict[str, Any]:
    """One player."""
    found = await backend.players(PlayerFilter(player_ids=(player_id,)), 1)
    if not found:
        raise HTTPException(404, f"no player with id {player_id}")
    return {"data": found[0].model_dump(mode="json")}


@router.get("/games", operation_id="listGames")
async def list_games(
    backend: LocalDep,
    paging: PagingDep,
    seasons: Seasons = None,
    team_ids: TeamIds = None,
    game_ids: GameIds = None,
    dates: Dates = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    postseason: Postseason = None,
) -> dict[str, Any]:
    """Games."""
    check_dates(start_date, end_date)
    filters = GameFilter(
        seasons=tuple(seasons or ()),
        dates=tuple(dates or ()),
        team_ids=tuple(team_ids or ()),
        game_ids=tuple(game_ids or ()),
        start_date=start_date,
        end_date=end_date,
        postseason=postseason,
    )
    return await _page(lambda n, o: backend.games(filters, n, o), lambda: backend.count_games(filters), *paging)


@router.get("/games/{game_id}", operation_id="getGame")
async def get_game(game_id: Id, backend: LocalDep) -> dict[str, Any]:
    """One game."""
    found = await backend.games(GameFilter(game_ids=(game_id,)), 1)
    if not found:
        raise HTTPException(404, f"no game with id {game_id}")
    return {"data": found[0].model_dump(mode="json")}


@router.get("/stats", operation_id="listStats")
async def list_stats(
    backend: LocalDep,
    paging: PagingDep,
    player_ids: PlayerIds = None,
    game_ids: GameIds = None,
    seasons: Seasons = None,
    team_ids: TeamIds = None,
    dates: Dates = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    postseason: Postseason = None,
) -> dict[str, Any]:
    """Box-score lines."""
    check_dates(start_date, end_date)
    filters = StatFilter(
        player_ids=tuple(player_ids or ()),
        dates=tuple(dates or ()),
        game_ids=tuple(game_ids or ()),
        seasons=tuple(seasons or ()),
        team_ids=tuple(team_ids or ()),
        start_date=start_date,
        end_date=end_date,
        postseason=postseason,
    )
    return await _page(lambda n, o: backend.stats(filters, n, o), lambda: backend.count_stats(filters), *paging)


@router.get("/season_averages", operation_id="listSeasonAverages")
async def list_season_averages(
    backend: LocalDep,
    season: Annotated[int, Query(ge=1946, le=2100)],
    player_ids: Annotated[list[Annotated[int, Query(ge=1, le=MAX_ID)]] | None, Query(max_length=MAX_IDS)] = None,
    player_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    postseason: bool = False,
) -> dict[str, Any]:
    """Per-game averages in a season."""
    ids = tuple(player_ids or ()) + ((player_id,) if player_id else ())
    if not ids:
        raise HTTPException(422, "player_ids[] (or player_id) is required")
    return {"data": _dump(await backend.season_averages(season, ids, postseason)), "meta": {}}


class FaultInjection:
    """Test-only failures chosen by request headers (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = headers.get("x-fault-key")
        if scope["path"].startswith("/__faults/"):
            body = json.dumps({"requests": self.requests[scope["path"].removeprefix("/__faults/")]}).encode()
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        if key is None:
            await self.app(scope, receive, send)
            return
        self.requests[key] += 1
        what, _, times = headers.get("x-fault", "").partition("*")
        if what and self.requests[key] <= int(times or "1"):
            if what.startswith("delay:"):
                await asyncio.sleep(int(what.removeprefix("delay:")) / 1000)
            else:
                response = JSONResponse(
                    {"error": f"injected {what}"},
                    status_code=int(what),
                    headers={"retry-after": headers["x-fault-retry-after"]} if "x-fault-retry-after" in headers else {},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_upstream_app(settings: UpstreamSettings | None = None) -> FastAPI:
    """The balldontlie-shaped API over the local dataset."""
    settings = settings or load_settings(UpstreamSettings)
    path = settings.dataset_path()
    backend = LocalBackend(Database(f"sqlite+aiosqlite:///{path}"))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(ensure_dataset, path)
        yield
        await backend.close()

    app = FastAPI(title="balldontlie-compatible API (plugkit)", lifespan=lifespan)
    app.state.settings = settings
    app.state.required_key = settings.required_key()
    app.state.backend = backend
    app.include_router(router)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    app.add_middleware(BracketArrays)
    if settings.upstream_faults:
        app.add_middleware(FaultInjection)
    return app
