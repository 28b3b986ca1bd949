"""The contract every sports data source fulfils."""

from __future__ import annotations

from typing import Protocol

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


class SportsBackendError(Exception):
    """The data source could not answer (upstream down, refused, too slow)."""

    def __init__(self, message: str, status_code: int = 502) -> None:
        super().__init__(message)
        self.status_code = status_code


class SportsBackend(Protocol):
    """Where the plugin's answers come from: the local dataset or a balldontlie-compatible API."""

    async def teams(self) -> list[Team]: ...
    # `offset` skips that many results of the ordered listing (the plugin's `cursor`)
    async def players(self, filters: PlayerFilter, limit: int, offset: int = 0) -> list[Player]: ...
    async def games(self, filters: GameFilter, limit: int, offset: int = 0) -> list[Game]: ...
    async def stats(self, filters: StatFilter, limit: int, offset: int = 0) -> list[Stat]: ...
    async def season_averages(self, season: int, player_ids: tuple[int, ...]) -> list[SeasonAverage]: ...
    async def close(self) -> None: ...
