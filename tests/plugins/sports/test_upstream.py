"""The balldontlie-shaped API served from the local dataset, in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from plugkit.plugins.sports.settings import UpstreamSettings
from plugkit.plugins.sports.upstream import create_upstream_app
from tests.helpers import asgi_client

KEY = {"Authorization": "k-123"}


@pytest.fixture
async def api(season_db: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = UpstreamSettings(data_dir=season_db, upstream_api_key=SecretStr("k-123"))
    async with asgi_client(create_upstream_app(settings)) as client:
        client.headers.update(KEY)
        yield client


async def test_requests_without_the_key_are_401(api: httpx.AsyncClient) -> None:
    assert (await api.get("/v1/teams", headers={"Authorization": "nope"})).status_code == 401
    del api.headers["Authorization"]
    assert (await api.get("/v1/teams")).status_code == 401


async def test_walking_the_cursor_visits_every_game_once(api: httpx.AsyncClient) -> None:
    seen: list[int] = []
    cursor: int | None = None
    while True:
        params = {"team_ids[]": 14, "per_page": 30, **({"cursor": cursor} if cursor is not None else {})}
        page = (await api.get("/v1/games", params=params)).json()
        seen += [g["id"] for g in page["data"]]
        cursor = page["meta"]["next_cursor"]
        if cursor is None:
            break
    total = (await api.get("/v1/games", params={"team_ids[]": 14, "page": 1})).json()["meta"]["total_count"]
    assert len(seen) == len(set(seen)) == total


async def test_legacy_pages_report_their_totals(api: httpx.AsyncClient) -> None:
    meta = (await api.get("/v1/players", params={"page": 2, "per_page": 50})).json()["meta"]
    assert meta["current_page"] == 2 and meta["per_page"] == 50 and meta["next_page"] == 3
    assert meta["total_pages"] == -(-meta["total_count"] // 50)


async def test_single_objects_and_404s(api: httpx.AsyncClient) -> None:
    assert (await api.get("/v1/teams/14")).json()["data"]["abbreviation"] == "LAL"
    assert (await api.get("/v1/teams/99")).status_code == 404
    assert (await api.get("/v1/games/2024040714")).json()["data"]["id"] == 2024040714
    assert (await api.get("/v1/games/1")).status_code == 404
    assert (await api.get("/v1/players/1")).status_code == 404


async def test_season_averages_take_player_ids_or_a_single_player_id(api: httpx.AsyncClient) -> None:
    [lebron] = (await api.get("/v1/players", params={"search": "lebron"})).json()["data"]
    many = (await api.get(f"/v1/season_averages?season=2023&player_ids[]={lebron['id']}")).json()["data"]
    one = (await api.get(f"/v1/season_averages?season=2023&player_id={lebron['id']}")).json()["data"]
    assert many == one and many[0]["player_id"] == lebron["id"]
    assert (await api.get("/v1/season_averages?season=2023")).status_code == 422


async def test_bad_parameters_are_422(api: httpx.AsyncClient) -> None:
    for path in ("/v1/games?per_page=101", "/v1/games?cursor=-1", "/v1/stats?player_ids[]=x", "/v1/games?page=0"):
        assert (await api.get(path)).status_code == 422, path
