"""The balldontlie client against a real balldontlie-shaped server (`plugkit serve sports-upstream`), with
injected 429s, 5xx and slow answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from plugkit.plugins.sports.app import create_app
from plugkit.plugins.sports.backend import SportsBackendError
from plugkit.plugins.sports.balldontlie import BalldontlieBackend, retry_after_seconds
from plugkit.plugins.sports.models import GameFilter, PlayerFilter, StatFilter
from plugkit.plugins.sports.settings import SportsSettings
from tests.helpers import asgi_client
from tests.plugins.sports.conftest import UPSTREAM_KEY, UpstreamServer

pytestmark = pytest.mark.slow


class RecordedSleeps(list[float]):
    """Stands in for asyncio.sleep: remembers each delay the client chose, without waiting."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


MakeClient = Callable[..., BalldontlieBackend]


@pytest.fixture
async def make_client(upstream: UpstreamServer) -> AsyncIterator[MakeClient]:
    made: list[BalldontlieBackend] = []

    def make(*, fault: str | None = None, key: str = UPSTREAM_KEY, **options: object) -> BalldontlieBackend:
        headers = {"x-fault-key": uuid.uuid4().hex}
        if fault:
            headers["x-fault"] = fault
        options.setdefault("backoff_s", 0.01)
        options.setdefault("sleep", RecordedSleeps())
        client = BalldontlieBackend(f"{upstream.base_url}/v1", key, headers=headers, **options)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


def fault_key(client: BalldontlieBackend) -> str:
    return client.client.headers["x-fault-key"]


async def test_teams_come_back_with_the_key_in_the_authorization_header(make_client: MakeClient) -> None:
    teams = await make_client().teams()
    assert len(teams) == 30
    assert {t.abbreviation for t in teams} >= {"LAL", "BOS"}


async def test_a_wrong_key_is_a_refusal_that_is_not_retried(make_client: MakeClient, upstream: UpstreamServer) -> None:
    client = make_client(key="wrong-key")
    with pytest.raises(SportsBackendError) as caught:
        await client.teams()
    assert caught.value.status_code == 502 and "refused the API key" in str(caught.value)
    assert upstream.requests_made(fault_key(client)) == 1


async def test_cursor_paging_collects_past_one_page(make_client: MakeClient, upstream: UpstreamServer) -> None:
    client = make_client()
    players = await client.players(PlayerFilter(), limit=150)
    assert len(players) == 150
    assert len({p.id for p in players}) == 150
    assert upstream.requests_made(fault_key(client)) == 2  # per_page is at most 100


async def test_legacy_page_paging_collects_past_one_page(legacy_upstream: UpstreamServer) -> None:
    client = BalldontlieBackend(f"{legacy_upstream.base_url}/v1", UPSTREAM_KEY)
    try:
        first = await client.get("players", [("per_page", "100")])
        players = await client.players(PlayerFilter(), limit=150)
    finally:
        await client.close()
    assert first["meta"]["total_pages"] > 1 and "next_cursor" not in first["meta"]
    assert len({p.id for p in players}) == 150


async def test_a_429_is_retried_after_the_retry_after_delay(make_client: MakeClient, upstream: UpstreamServer) -> None:
    sleeps = RecordedSleeps()
    client = make_client(fault="429*2", sleep=sleeps)
    client.client.headers["x-fault-retry-after"] = "1"
    teams = await client.teams()
    assert len(teams) == 30
    assert sleeps == [1.0, 1.0]
    assert upstream.requests_made(fault_key(client)) == 3


async def test_a_long_retry_after_is_capped(make_client: MakeClient) -> None:
    sleeps = RecordedSleeps()
    client = make_client(fault="429*1", sleep=sleeps, max_backoff_s=5.0)
    client.client.headers["x-fault-retry-after"] = "3600"
    await client.teams()
    assert sleeps == [5.0]


async def test_a_5xx_is_retried_with_growing_backoff(make_client: MakeClient, upstream: UpstreamServer) -> None:
    sleeps = RecordedSleeps()
    client = make_client(fault="503*3", sleep=sleeps, retries=3)
    assert len(await client.teams()) == 30
    assert len(sleeps) == 3 and sleeps[0] <= sleeps[1] <= sleeps[2]
    assert upstream.requests_made(fault_key(client)) == 4


async def test_it_gives_up_after_the_retries_with_a_502(make_client: MakeClient, upstream: UpstreamServer) -> None:
    client = make_client(fault="503*100", retries=2)
    with pytest.raises(SportsBackendError) as caught:
        await client.teams()
    assert caught.value.status_code == 502 and "503" in str(caught.value)
    assert upstream.requests_made(fault_key(client)) == 3


async def test_a_slow_answer_times_out_and_is_retried(make_client: MakeClient, upstream: UpstreamServer) -> None:
    client = make_client(fault="delay:4000*1", timeout_s=1.0)
    assert len(await client.teams()) == 30
    assert upstream.requests_made(fault_key(client)) == 2


async def test_an_upstream_that_stays_slow_is_a_504(make_client: MakeClient) -> None:
    client = make_client(fault="delay:3000*100", timeout_s=0.3, retries=1)
    with pytest.raises(SportsBackendError) as caught:
        await client.teams()
    assert caught.value.status_code == 504


async def test_a_repeated_question_costs_no_upstream_call(make_client: MakeClient, upstream: UpstreamServer) -> None:
    client = make_client()
    question = GameFilter(seasons=(2023,), team_ids=(14,))
    first = await client.games(question, limit=20)
    second = await client.games(question, limit=20)
    assert first == second and len(first) == 20
    assert upstream.requests_made(fault_key(client)) == 1
    assert client.upstream_calls == 1


async def test_cached_answers_expire_after_the_ttl(make_client: MakeClient, upstream: UpstreamServer) -> None:
    client = make_client(cache_ttl_s=60)
    now = [1000.0]
    client.cache.clock = lambda: now[0]
    await client.teams()
    now[0] += 59
    await client.teams()
    now[0] += 2
    await client.teams()
    assert upstream.requests_made(fault_key(client)) == 2


async def test_concurrent_equal_questions_share_one_upstream_call(
    make_client: MakeClient, upstream: UpstreamServer
) -> None:
    client = make_client(fault="delay:300*1")
    answers = await asyncio.gather(*(client.teams() for _ in range(5)))
    assert all(a == answers[0] for a in answers)
    assert upstream.requests_made(fault_key(client)) == 1


async def test_array_filters_reach_the_upstream_as_bracket_params(make_client: MakeClient) -> None:
    client = make_client()
    [lebron] = await client.players(PlayerFilter(search="LeBron"), limit=5)
    lines = await client.stats(StatFilter(player_ids=(lebron.id,), seasons=(2023,)), limit=100)
    assert len(lines) > 60
    assert {line.player.id for line in lines if line.player} == {lebron.id}
    games = await client.games(GameFilter(team_ids=(14, 2), start_date=datetime(2024, 1, 1).date()), limit=100)
    assert games and all({14, 2} & {g.home_team.id, g.visitor_team.id} for g in games if g.home_team and g.visitor_team)
    assert min(g.date for g in games) >= "2024-01-01"


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0
    assert retry_after_seconds("soon", now) is None and retry_after_seconds(None, now) is None


async def test_the_plugin_answers_the_same_on_either_backend(upstream: UpstreamServer, tmp_path: Path) -> None:
    remote = SportsSettings(
        data_dir=tmp_path / "remote",
        sports_backend="balldontlie",
        balldontlie_url=f"{upstream.base_url}/v1",
        balldontlie_api_key=UPSTREAM_KEY,
    )
    local = SportsSettings(data_dir=tmp_path / "local")  # the same bundled sample the upstream serves
    answers: list[list[object]] = []
    for settings in (remote, local):
        async with asgi_client(create_app(settings)) as client:
            [lebron] = (await client.get("/players", params={"query": "lebron"})).json()["data"]
            answers.append(
                [
                    lebron,
                    (await client.get(f"/season_averages?season=2023&player_ids[]={lebron['id']}")).json(),
                    (await client.get("/games", params={"team_ids": 2, "limit": 30})).json(),
                    (await client.get("/stats", params={"player_ids": lebron["id"], "limit": 5})).json(),
                    (await client.get("/games", params={"dates[]": ["2024-01-15", "2024-03-02"]})).json(),
                    (await client.get("/games", params={"team_ids": 2, "per_page": 7, "cursor": 14})).json(),
                ]
            )
    assert answers[0] == answers[1]


async def test_an_upstream_failure_reaches_the_model_as_a_clear_502(upstream: UpstreamServer, tmp_path: Path) -> None:
    settings = SportsSettings(
        data_dir=tmp_path,
        sports_backend="balldontlie",
        balldontlie_url=f"{upstream.base_url}/v1",
        balldontlie_api_key="not-the-key",
    )
    async with asgi_client(create_app(settings)) as client:
        response = await client.get("/teams")
    assert response.status_code == 502
    assert "refused the API key" in response.json()["detail"]
    assert "not-the-key" not in response.text


async def test_an_unreachable_upstream_is_a_502(tmp_path: Path) -> None:
    client = BalldontlieBackend("http://127.0.0.1:9/v1", "k", retries=1, sleep=RecordedSleeps())
    try:
        with pytest.raises(SportsBackendError) as caught:
            await client.teams()
    finally:
        await client.close()
    assert caught.value.status_code == 502 and "cannot reach" in str(caught.value)


async def test_season_averages_ask_once_per_player_in_both_api_styles(
    make_client: MakeClient, upstream: UpstreamServer
) -> None:
    client = make_client()
    ids = tuple(p.id for p in await client.players(PlayerFilter(search="James"), limit=2))
    key = fault_key(client)
    before = upstream.requests_made(key)
    averages = await client.season_averages(2023, ids)
    again = await client.season_averages(2023, ids)
    assert [a.player_id for a in averages] == list(ids) and again == averages
    assert all(a.season == 2023 and a.games_played > 0 for a in averages)
    assert upstream.requests_made(key) - before == 2
