"""The sports plugin's API over the local dataset, in-process; results checked against the CSV read independently."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from plugkit.manifest import has_errors, validate_manifest
from plugkit.plugins.sports.app import create_app
from plugkit.plugins.sports.settings import SportsSettings
from tests.helpers import asgi_client, assert_response_matches_spec

LAKERS = 14  # balldontlie's id for LAL


@pytest.fixture
async def client(season_db: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(SportsSettings(data_dir=season_db))) as client:
        yield client


async def player_id(client: httpx.AsyncClient, name: str) -> int:
    found = (await client.get("/players", params={"query": name})).json()["data"]
    matches = [p["id"] for p in found if f"{p['first_name']} {p['last_name']}" == name]
    assert len(matches) == 1, found
    return int(matches[0])


def csv_rows_of(rows: list[dict[str, str]], player: str) -> list[dict[str, str]]:
    return [r for r in rows if r["Player"] == player]


async def test_lebron_season_averages_match_the_box_scores(
    client: httpx.AsyncClient, boxscore_rows: list[dict[str, str]]
) -> None:
    lebron = await player_id(client, "LeBron James")
    response = await client.get(f"/season_averages?season=2023&player_ids[]={lebron}")
    assert response.status_code == 200
    [averages] = response.json()["data"]

    rows = csv_rows_of(boxscore_rows, "LeBron James")
    games = len(rows)

    def mean(column: str) -> float:
        return sum(float(r[column]) for r in rows) / games

    assert averages["player_id"] == lebron and averages["season"] == 2023
    assert averages["games_played"] == games
    assert averages["pts"] == pytest.approx(mean("Points"), abs=0.006)
    assert averages["reb"] == pytest.approx(mean("REB"), abs=0.006)
    assert averages["ast"] == pytest.approx(mean("AST"), abs=0.006)
    assert averages["fg3m"] == pytest.approx(mean("3PM"), abs=0.006)
    assert averages["pf"] == pytest.approx(mean("PF"), abs=0.006)
    made, attempted = sum(int(r["FGM"]) for r in rows), sum(int(r["FGA"]) for r in rows)
    assert averages["fg_pct"] == pytest.approx(made / attempted, abs=0.0006)
    # The file's header calls the three columns after AST "TO, STL, BLK"; they hold steals, blocks, turnovers.
    assert averages["stl"] == pytest.approx(mean("TO"), abs=0.006)
    assert averages["blk"] == pytest.approx(mean("STL"), abs=0.006)
    assert averages["turnover"] == pytest.approx(mean("BLK"), abs=0.006)
    assert averages["turnover"] > averages["stl"] > averages["blk"]  # LeBron's real profile: 3.5, 1.3, 0.5


async def test_a_players_total_points_in_the_season_match_the_box_scores(
    client: httpx.AsyncClient, boxscore_rows: list[dict[str, str]]
) -> None:
    jokic = await player_id(client, "Nikola Jokic")
    response = await client.get("/stats", params={"player_ids": jokic, "seasons": 2023, "limit": 100})
    assert response.status_code == 200
    lines = response.json()["data"]
    expected = csv_rows_of(boxscore_rows, "Nikola Jokic")
    assert len(lines) == len(expected)
    assert sum(line["pts"] for line in lines) == sum(int(r["Points"]) for r in expected)
    assert {line["player"]["id"] for line in lines} == {jokic}


async def test_a_teams_number_of_games_matches_the_box_scores(
    client: httpx.AsyncClient, boxscore_rows: list[dict[str, str]]
) -> None:
    expected = {r["Date"] for r in boxscore_rows if r["Team"] == "LAL"}
    response = await client.get("/games", params={"team_ids": LAKERS, "seasons": 2023, "limit": 100})
    assert response.status_code == 200
    games = response.json()["data"]
    assert len(games) == len(expected)
    assert all(LAKERS in (g["home_team"]["id"], g["visitor_team"]["id"]) for g in games)
    assert response.json()["meta"]["truncated"] is False


async def test_game_scores_are_the_sums_of_the_players_points(
    client: httpx.AsyncClient, boxscore_rows: list[dict[str, str]]
) -> None:
    points: dict[tuple[str, str], int] = defaultdict(int)
    for row in boxscore_rows:
        month, day, year = row["Date"].split("/")
        points[(f"{year}-{month}-{day}", row["Team"])] += int(row["Points"])
    games = (await client.get("/games", params={"team_ids": LAKERS, "limit": 100})).json()["data"]
    for game in games:
        assert game["home_team_score"] == points[(game["date"], game["home_team"]["abbreviation"])]
        assert game["visitor_team_score"] == points[(game["date"], game["visitor_team"]["abbreviation"])]


async def test_bracket_arrays_and_repeated_keys_give_the_same_answer(client: httpx.AsyncClient) -> None:
    brackets = await client.get("/games?team_ids[]=14&team_ids[]=2&seasons[]=2023&limit=100")
    encoded = await client.get("/games?team_ids%5B%5D=14&team_ids%5B%5D=2&seasons%5B%5D=2023&limit=100")
    plain = await client.get("/games?team_ids=14&team_ids=2&seasons=2023&limit=100")
    assert brackets.status_code == encoded.status_code == plain.status_code == 200
    assert brackets.json() == encoded.json() == plain.json()
    assert {14, 2} <= {t for g in plain.json()["data"] for t in (g["home_team"]["id"], g["visitor_team"]["id"])}


async def test_games_filter_by_game_id_and_stats_by_team_as_the_upstream_api_does(
    client: httpx.AsyncClient, boxscore_rows: list[dict[str, str]]
) -> None:
    first = (await client.get("/games", params={"team_ids": LAKERS, "limit": 1})).json()["data"][0]
    by_id = (await client.get("/games", params={"game_ids": first["id"]})).json()["data"]
    lines = (await client.get("/stats", params={"game_ids": first["id"], "team_ids": LAKERS, "limit": 100})).json()
    month_day_year = "/".join([first["date"][5:7], first["date"][8:10], first["date"][:4]])
    expected = [r for r in boxscore_rows if r["Team"] == "LAL" and r["Date"] == month_day_year]
    assert [g["id"] for g in by_id] == [first["id"]]
    assert len(lines["data"]) == len(expected) and {s["team"]["id"] for s in lines["data"]} == {LAKERS}


async def test_player_search_matches_first_or_last_name(client: httpx.AsyncClient) -> None:
    by_first = (await client.get("/players", params={"query": "lebron"})).json()["data"]
    by_last = (await client.get("/players", params={"query": "Antetokounmpo", "limit": 100})).json()["data"]
    assert [p["last_name"] for p in by_first] == ["James"]
    assert {p["first_name"] for p in by_last} >= {"Giannis", "Thanasis"}
    assert all(p["last_name"] == "Antetokounmpo" for p in by_last)


async def test_date_range_keeps_only_games_inside_it(client: httpx.AsyncClient) -> None:
    response = await client.get("/games", params={"start_date": "2024-01-01", "end_date": "2024-01-03", "limit": 100})
    dates = {g["date"] for g in response.json()["data"]}
    assert dates and dates <= {"2024-01-01", "2024-01-02", "2024-01-03"}


@pytest.mark.parametrize(
    "path",
    [
        "/games?start_date=2024-13-01",
        "/games?end_date=yesterday",
        "/stats?start_date=0",
        "/games?start_date=2024-01-01T10:00:00",
        "/games?team_ids[]=abc",
        "/games?team_ids=0",
        "/stats?player_ids=-5",
        "/stats?game_ids=1.5",
        "/stats?team_ids=0",
        "/games?game_ids=x",
        "/games?start_date=2024-02-01&end_date=2024-01-01",
        "/games?limit=0",
        "/games?limit=101",
        "/games?dates[]=2024-13-45",
        "/games?per_page=101",
        "/games?cursor=-1",
        "/season_averages?season=2023",
        "/season_averages?player_ids=1",
        "/season_averages?season=nineteen&player_ids=1",
    ],
)
async def test_invalid_dates_ids_and_limits_are_422_naming_the_parameter(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail and all(item["loc"][0] == "query" for item in detail)


async def test_large_answers_are_capped_and_say_so(season_db: Path) -> None:
    settings = SportsSettings(data_dir=season_db, max_response_chars=20_000)
    async with asgi_client(create_app(settings)) as client:
        response = await client.get("/stats", params={"limit": 100})
    assert response.status_code == 200
    assert len(response.text) < 20_000
    body = response.json()
    assert 0 < len(body["data"]) < 100
    assert body["meta"]["truncated"] is True
    assert "left out" in body["meta"]["note"]


async def test_a_capped_page_goes_on_at_its_first_left_out_result(season_db: Path) -> None:
    settings = SportsSettings(data_dir=season_db, max_response_chars=20_000)
    async with asgi_client(create_app(settings)) as client:
        capped = (await client.get("/stats", params={"limit": 100, "cursor": 5})).json()
        kept = len(capped["data"])
        assert capped["meta"]["truncated"] is True and 0 < kept < 100
        assert capped["meta"]["next_cursor"] == 5 + kept
        following = (await client.get("/stats", params={"limit": 1, "cursor": 5 + kept})).json()
        listed = (await client.get("/stats", params={"limit": 1, "cursor": 5 + kept - 1})).json()
    assert following["data"][0]["id"] not in {s["id"] for s in capped["data"]}
    assert listed["data"][0]["id"] == capped["data"][-1]["id"]


async def test_a_page_with_more_after_it_names_the_next_cursor(client: httpx.AsyncClient) -> None:
    answer = (await client.get("/games", params={"team_ids": LAKERS, "limit": 25, "cursor": 10})).json()
    assert len(answer["data"]) == 25 and answer["meta"]["next_cursor"] == 35 and answer["meta"]["truncated"] is False
    last = (await client.get("/games", params={"team_ids": LAKERS, "limit": 100, "cursor": 35})).json()
    assert 0 < len(last["data"]) < 100 and last["meta"]["next_cursor"] is None


async def test_a_full_page_of_stats_stays_under_the_model_hosts_limit(client: httpx.AsyncClient) -> None:
    response = await client.get("/stats", params={"limit": 100})
    assert response.status_code == 200
    assert len(response.text) < 100_000


async def test_manifest_is_valid_and_within_the_strict_length_limits(season_db: Path) -> None:
    settings = SportsSettings(data_dir=season_db, public_url="https://sports.example.com")
    async with asgi_client(create_app(settings)) as client:
        manifest = (await client.get("/.well-known/ai-plugin.json")).json()
    assert not has_errors(validate_manifest(manifest, "default"))
    # Strict mode objects only to the underscore, which the example's name had and 290 approved plugins use.
    assert {p.field for p in validate_manifest(manifest, "strict") if p.level == "error"} <= {"name_for_model"}
    assert manifest["name_for_model"] == "sportsstats"
    assert len(manifest["name_for_human"]) <= 20 and len(manifest["description_for_human"]) <= 100


async def test_spec_has_the_examples_routes_with_operation_ids_and_markdown_table_summaries(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert set(spec["paths"]) == {"/players", "/teams", "/games", "/stats", "/season_averages"}
    operations = [item["get"] for item in spec["paths"].values()]
    assert {op["operationId"] for op in operations} == {
        "getPlayers",
        "getTeams",
        "getGames",
        "getStats",
        "getSeasonAverages",
    }
    assert all("Display results using markdown tables" in op["summary"] for op in operations)
    params = {p["name"] for p in spec["paths"]["/games"]["get"]["parameters"]}
    assert {"limit", "seasons", "team_ids", "start_date", "end_date"} <= params
    params = {p["name"] for p in spec["paths"]["/stats"]["get"]["parameters"]}
    assert {"limit", "player_ids", "game_ids", "start_date", "end_date"} <= params


async def test_answers_match_the_spec(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    lebron = await player_id(client, "LeBron James")
    paths: list[tuple[str, dict[str, Any]]] = [
        ("/players", {"query": "james"}),
        ("/teams", {}),
        ("/games", {"seasons": 2023, "limit": 3}),
        ("/stats", {"player_ids": lebron, "limit": 3}),
        ("/season_averages", {"season": 2023, "player_ids": lebron}),
        ("/games", {"start_date": "bad"}),
    ]
    for path, params in paths:
        assert_response_matches_spec(spec, await client.get(path, params=params))


async def test_a_fresh_data_dir_answers_from_the_bundled_sample(tmp_path: Path) -> None:
    async with asgi_client(create_app(SportsSettings(data_dir=tmp_path / "fresh"))) as client:
        teams = (await client.get("/teams")).json()["data"]
        games = (await client.get("/games", params={"team_ids": LAKERS, "limit": 100})).json()["data"]
        lebron = await player_id(client, "LeBron James")
        averages = (await client.get("/season_averages", params={"season": 2023, "player_ids": lebron})).json()
    assert len(teams) == 30
    assert len(games) > 70
    assert averages["data"][0]["games_played"] > 60
    assert (tmp_path / "fresh" / "sports.db").is_file()


async def test_a_player_query_with_a_control_character_is_a_422_naming_the_parameter(client: httpx.AsyncClient) -> None:
    response = await client.get("/players", params={"query": "le\x00bron"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "query"]


async def test_games_on_the_dates_asked_for_are_the_only_ones_returned(client: httpx.AsyncClient) -> None:
    days = ["2024-01-15", "2024-03-02"]
    games = (await client.get("/games", params={"dates[]": days, "limit": 100})).json()["data"]
    assert games and {g["date"] for g in games} == set(days)
    stats = (await client.get("/stats", params={"dates[]": days[:1], "limit": 100})).json()["data"]
    assert stats and {s["game"]["date"] for s in stats} == {days[0]}


async def test_per_page_and_cursor_page_through_games_as_balldontlie_does(client: httpx.AsyncClient) -> None:
    everything = (await client.get("/games", params={"team_ids": LAKERS, "limit": 100})).json()["data"]
    pages: list[dict[str, Any]] = []
    cursor: int | None = 0
    while cursor is not None:
        answer = (await client.get("/games", params={"team_ids": LAKERS, "per_page": 30, "cursor": cursor})).json()
        assert len(answer["data"]) <= 30 and answer["meta"]["per_page"] == 30
        pages.extend(answer["data"])
        cursor = answer["meta"]["next_cursor"]
    assert [g["id"] for g in pages] == [g["id"] for g in everything] and len(pages) > 30


async def test_a_player_found_by_balldontlies_search_parameter_is_the_one_query_finds(
    client: httpx.AsyncClient,
) -> None:
    by_search = (await client.get("/players", params={"search": "lebron"})).json()["data"]
    assert by_search == (await client.get("/players", params={"query": "lebron"})).json()["data"] != []


@pytest.mark.parametrize(
    ("path", "unknown"),
    [
        ("/games?season=2023", ["season"]),
        ("/players?first_name=LeBron&x=1", ["first_name", "x"]),
        ("/teams?page=2", ["page"]),
    ],
)
async def test_an_unknown_query_parameter_is_a_422_naming_it(
    client: httpx.AsyncClient, path: str, unknown: list[str]
) -> None:
    """balldontlie users send parameters this API may not take: silently ignoring one returned unfiltered results."""
    response = await client.get(path)
    assert response.status_code == 422
    assert [item["loc"] for item in response.json()["detail"]] == [["query", name] for name in unknown]
    assert "unknown query parameter" in response.json()["detail"][0]["msg"]
