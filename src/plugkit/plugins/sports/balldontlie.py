"""The balldontlie backend: an async, pooled client of the balldontlie v1 API (or any server of its shape).

The key goes in the Authorization header; arrays as `key[]=v`; both paging styles (cursor with
`meta.next_cursor`, and the legacy `page` with `meta.total_pages`); retries with exponential backoff on 429, 5xx
and network errors, honouring Retry-After; and a TTL cache, so a repeated question costs no upstream call.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from plugkit.cache import TTLCache
from plugkit.plugins.sports.backend import SportsBackendError
from plugkit.plugins.sports.models import (
    Game,
    GameFilter,
    Player,
    PlayerFilter,
    SeasonAverage,
    Stat,
    StatFilter,
    Team,
)
from plugkit.plugins.sports.settings import SportsSettings

log = logging.getLogger("plugkit.sports.balldontlie")

Params = tuple[tuple[str, str], ...]
MAX_PER_PAGE = 100


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _arrays(name: str, values: Sequence[object]) -> list[tuple[str, str]]:
    return [(f"{name}[]", str(v)) for v in values]


class BalldontlieBackend:
    """A SportsBackend over the balldontlie v1 API."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 20.0,
        cache_ttl_s: float = 300.0,
        cache_size: int = 2048,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        all_headers = {"Accept": "application/json", **(headers or {})}
        if api_key:
            all_headers["Authorization"] = api_key
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=all_headers,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            transport=transport,
        )
        self.retries, self.backoff_s, self.max_backoff_s = retries, backoff_s, max_backoff_s
        self.cache = TTLCache(cache_ttl_s, cache_size)
        self.sleep = sleep
        self.upstream_calls = 0
        self._inflight: dict[tuple[str, Params], asyncio.Future[dict[str, Any]]] = {}

    @classmethod
    def from_settings(cls, settings: SportsSettings) -> BalldontlieBackend:
        return cls(
            settings.balldontlie_url,
            settings.balldontlie_key(),
            timeout_s=settings.upstream_timeout_s,
            retries=settings.upstream_retries,
            backoff_s=settings.upstream_backoff_s,
            max_backoff_s=settings.upstream_max_backoff_s,
            cache_ttl_s=settings.cache_ttl_s,
            cache_size=settings.cache_size,
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def get(self, path: str, params: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
        """One upstream answer, from the cache when it holds a fresh one; concurrent equal asks share one call."""
        key = (path, tuple(params))
        cached = self.cache.get(key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            answer = await self._fetch(path, key[1])
            self.cache.put(key, answer)
            future.set_result(answer)
            return answer
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._inflight[key]

    def _backoff(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2.0**attempt * (0.5 + random.random() / 2))

    async def _fetch(self, path: str, params: Params) -> dict[str, Any]:
        error = SportsBackendError("the upstream API did not answer", 502)
        for attempt in range(self.retries + 1):
            delay = self._backoff(attempt)
            try:
                self.upstream_calls += 1
                response = await self.client.get(path.lstrip("/"), params=list(params))
            except httpx.TimeoutException:
                error = SportsBackendError("the upstream API did not answer in time", 504)
            except httpx.TransportError as exc:
                error = SportsBackendError(f"cannot reach the upstream API ({type(exc).__name__})", 502)
            else:
                status = response.status_code
                if status == 429 or status >= 500:
                    error = SportsBackendError(f"the upstream API answered {status} after {attempt + 1} tries", 502)
                    waited = retry_after_seconds(response.headers.get("retry-after"))
                    if waited is not None:
                        delay = min(waited, self.max_backoff_s)
                elif status in (401, 403):
                    raise SportsBackendError(f"the upstream API refused the API key ({status})", 502)
                elif status == 404:
                    raise SportsBackendError(f"the upstream API has no {path} (404): check its URL", 502)
                elif status >= 400:
                    raise SportsBackendError(f"the upstream API rejected the request ({status})", 502)
                else:
                    try:
                        document = response.json()
                    except ValueError as exc:
                        raise SportsBackendError("the upstream API answered something other than JSON", 502) from exc
                    if not isinstance(document, dict):
                        raise SportsBackendError("the upstream API answered an unexpected shape", 502)
                    return document
            if attempt < self.retries:
                log.info("upstream %s failed (%s); retrying in %.2f s", path, error, delay)
                await self.sleep(delay)
        raise error

    async def collect(self, path: str, params: Sequence[tuple[str, str]], limit: int) -> list[dict[str, Any]]:
        """Up to `limit` items of a listing, following either paging style."""
        items: list[dict[str, Any]] = []
        per_page = min(MAX_PER_PAGE, max(1, limit))
        base = [*params, ("per_page", str(per_page))]
        extra: list[tuple[str, str]] = []
        for _ in range(limit // per_page + 2):  # a bound, in case an upstream keeps handing out cursors
            document = await self.get(path, [*base, *extra])
            data = document.get("data")
            if not isinstance(data, list):
                raise SportsBackendError("the upstream API answered without a data list", 502)
            items.extend(d for d in data if isinstance(d, dict))
            meta = document.get("meta") or {}
            if len(items) >= limit or not data:
                break
            if meta.get("next_cursor") is not None:
                extra = [("cursor", str(meta["next_cursor"]))]
            elif meta.get("total_pages") is not None and int(meta.get("current_page") or 1) < int(meta["total_pages"]):
                extra = [("page", str(int(meta.get("current_page") or 1) + 1))]
            else:
                break
        return items[:limit]

    def _parse(self, model: Any, items: list[dict[str, Any]]) -> list[Any]:
        try:
            return [model.model_validate(item) for item in items]
        except ValueError as exc:
            message = f"the upstream API answered a {model.__name__} of an unexpected shape"
            raise SportsBackendError(message, 502) from exc

    async def teams(self) -> list[Team]:
        return self._parse(Team, await self.collect("teams", [], MAX_PER_PAGE))

    async def players(self, filters: PlayerFilter, limit: int, offset: int = 0) -> list[Player]:
        params = [("search", filters.search)] if filters.search else []
        params += _arrays("player_ids", filters.player_ids) + _arrays("team_ids", filters.team_ids)
        return self._parse(Player, (await self.collect("players", params, offset + limit))[offset:])

    async def games(self, filters: GameFilter, limit: int, offset: int = 0) -> list[Game]:
        params = _arrays("seasons", filters.seasons) + _arrays("team_ids", filters.team_ids)
        params += _arrays("game_ids", filters.game_ids) + _dates_and_postseason(filters)
        games: list[Game] = self._parse(Game, (await self.collect("games", params, offset + limit))[offset:])
        for game in games:
            game.date = game.date[:10]  # the API answers a full timestamp
        return games

    async def stats(self, filters: StatFilter, limit: int, offset: int = 0) -> list[Stat]:
        params = _arrays("player_ids", filters.player_ids) + _arrays("game_ids", filters.game_ids)
        params += _arrays("seasons", filters.seasons) + _arrays("team_ids", filters.team_ids)
        params += _dates_and_postseason(filters)
        stats: list[Stat] = self._parse(Stat, (await self.collect("stats", params, offset + limit))[offset:])
        for stat in stats:
            if stat.game is not None:
                stat.game.date = stat.game.date[:10]
        return stats

    async def season_averages(self, season: int, player_ids: tuple[int, ...]) -> list[SeasonAverage]:
        """One call per player, concurrently: the current API takes `player_id`, the legacy one `player_ids[]`;
        each ignores the other's parameter, so both are sent."""

        async def one(player_id: int) -> list[dict[str, Any]]:
            params = [("season", str(season)), ("player_id", str(player_id)), ("player_ids[]", str(player_id))]
            data = (await self.get("season_averages", params)).get("data")
            if not isinstance(data, list):
                raise SportsBackendError("the upstream API answered without a data list", 502)
            return [d for d in data if isinstance(d, dict)]

        answers = await asyncio.gather(*(one(pid) for pid in dict.fromkeys(player_ids)))
        return self._parse(SeasonAverage, [item for answer in answers for item in answer])


def _dates_and_postseason(filters: GameFilter | StatFilter) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = [("dates[]", d.isoformat()) for d in filters.dates]
    if filters.start_date:
        params.append(("start_date", filters.start_date.isoformat()))
    if filters.end_date:
        params.append(("end_date", filters.end_date.isoformat()))
    if filters.postseason is not None:
        params.append(("postseason", "true" if filters.postseason else "false"))
    return params
