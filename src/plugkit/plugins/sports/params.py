"""Query parameters shared by the plugin and the upstream API, and `key[]=v` arrays folded into `key=v`."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BeforeValidator
from starlette.types import ASGIApp, Receive, Scope, Send

from plugkit.plugins.sports.models import GameFilter, StatFilter

MAX_ID = 2**53  # ids stay exact in JavaScript clients
MAX_IDS = 100

Limit = Annotated[int, Query(ge=1, le=100, description="The most results to return (1-100).")]
Seasons = Annotated[
    list[Annotated[int, Query(ge=1946, le=2100)]] | None,
    Query(max_length=30, description="Seasons by the year they started: 2023 is the 2023-24 season."),
]
TeamIds = Annotated[
    list[Annotated[int, Query(ge=1, le=MAX_ID)]] | None,
    Query(max_length=MAX_IDS, description="Team ids, as /teams lists them."),
]
PlayerIds = Annotated[
    list[Annotated[int, Query(ge=1, le=MAX_ID)]] | None,
    Query(max_length=MAX_IDS, description="Player ids, as /players finds them."),
]
GameIds = Annotated[
    list[Annotated[int, Query(ge=1, le=MAX_ID)]] | None,
    Query(max_length=MAX_IDS, description="Game ids, as /games lists them."),
]
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def iso_date_only(value: object) -> object:
    """Dates only as YYYY-MM-DD (pydantic alone would also take a number as a Unix timestamp)."""
    if isinstance(value, str) and not ISO_DATE.fullmatch(value):
        raise ValueError(f"{value!r} is not a date in the form YYYY-MM-DD")
    return value


StartDate = Annotated[
    date | None,
    BeforeValidator(iso_date_only),
    Query(description="Only games on or after this date, YYYY-MM-DD (not after end_date)."),
]
EndDate = Annotated[
    date | None, BeforeValidator(iso_date_only), Query(description="Only games on or before this date, YYYY-MM-DD.")
]
Postseason = Annotated[bool | None, Query(description="true: playoff games only; false: regular season only.")]
Dates = Annotated[
    list[Annotated[date, BeforeValidator(iso_date_only)]] | None,
    Query(max_length=MAX_IDS, description="Only games on these dates, YYYY-MM-DD (balldontlie's dates[])."),
]
PerPage = Annotated[
    int | None, Query(ge=1, le=100, description="balldontlie's name for limit: the most results to return (1-100).")
]
MAX_CURSOR = 10_000
Cursor = Annotated[
    int | None,
    Query(ge=0, le=MAX_CURSOR, description="meta.next_cursor of the previous answer, to get the next page."),
]


def check_dates(start_date: date | None, end_date: date | None) -> None:
    if start_date and end_date and start_date > end_date:
        error = {
            "loc": ("query", "start_date"),
            "msg": f"start_date {start_date} is after end_date {end_date}",
            "type": "value_error",
        }
        raise RequestValidationError([error])


async def game_filter(
    seasons: Seasons = None,
    team_ids: TeamIds = None,
    game_ids: GameIds = None,
    dates: Dates = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    postseason: Postseason = None,
) -> GameFilter:
    """The games a request asks for, from its query parameters (a start after the end is a 422)."""
    check_dates(start_date, end_date)
    return GameFilter(
        seasons=tuple(seasons or ()),
        team_ids=tuple(team_ids or ()),
        game_ids=tuple(game_ids or ()),
        dates=tuple(dates or ()),
        start_date=start_date,
        end_date=end_date,
        postseason=postseason,
    )


async def stat_filter(
    player_ids: PlayerIds = None,
    game_ids: GameIds = None,
    seasons: Seasons = None,
    team_ids: TeamIds = None,
    dates: Dates = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    postseason: Postseason = None,
) -> StatFilter:
    """The box-score lines a request asks for, from its query parameters (a start after the end is a 422)."""
    check_dates(start_date, end_date)
    return StatFilter(
        player_ids=tuple(player_ids or ()),
        game_ids=tuple(game_ids or ()),
        seasons=tuple(seasons or ()),
        team_ids=tuple(team_ids or ()),
        dates=tuple(dates or ()),
        start_date=start_date,
        end_date=end_date,
        postseason=postseason,
    )


GameFilterDep = Annotated[GameFilter, Depends(game_filter)]
StatFilterDep = Annotated[StatFilter, Depends(stat_filter)]


async def known_query_only(request: Request) -> None:
    """A query parameter the operation does not take is a 422 naming it, rather than silently ignored (a filter a
    client thinks it applied would otherwise return unfiltered results)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known: frozenset[str] | None = getattr(route, "_known_query", None)  # the route's names, found once
    if known is None:
        names: set[str] = set()
        pending = [dependant]
        while pending:
            current = pending.pop()
            names.update(param.alias for param in current.query_params)
            pending.extend(current.dependencies)
        known = frozenset(names)
        route._known_query = known  # type: ignore[union-attr]
    unknown = [name for name in dict.fromkeys(request.query_params.keys()) if name not in known]
    if unknown:
        takes = ", ".join(sorted(known)) or "no query parameters"
        raise RequestValidationError(
            [
                {
                    "loc": ("query", name),
                    "msg": f"unknown query parameter {name!r}; this operation takes: {takes}",
                    "type": "extra_forbidden",
                }
                for name in unknown
            ]
        )


KEY_BRACKETS = re.compile(rb"(^|&)([^&=]*?)(?:\[|%5[Bb])(?:\]|%5[Dd])(?=[=&]|$)")


class BracketArrays:
    """Rewrites `seasons[]=2023` (and `seasons%5B%5D=2023`) to `seasons=2023`, so both array styles reach the
    same parameter."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if b"[]" in query or b"%5" in query:
            # The brackets at the end of each key (a key runs from the start or an & to the next = or &), cut out of
            # the raw query: values and the rest of each key stay as sent.
            scope = {**scope, "query_string": KEY_BRACKETS.sub(rb"\1\2", query)}
        await self.app(scope, receive, send)
