"""The balldontlie v1 shapes the plugin answers with, and the filters its routes take."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from pydantic import BaseModel, ConfigDict, Field


class _Upstream(BaseModel):
    # Upstream objects carry fields this plugin does not use; they are dropped, not rejected.
    model_config = ConfigDict(extra="ignore")


class Team(_Upstream):
    id: int
    conference: str | None = None
    division: str | None = None
    city: str | None = None
    name: str | None = None
    full_name: str | None = None
    abbreviation: str | None = None


class Player(_Upstream):
    id: int
    first_name: str
    last_name: str
    position: str | None = None
    height: str | None = None
    weight: str | None = None
    jersey_number: str | None = None
    college: str | None = None
    country: str | None = None
    draft_year: int | None = None
    draft_round: int | None = None
    draft_number: int | None = None
    team: Team | None = Field(default=None, description="The player's latest team in the dataset.")


class Game(_Upstream):
    id: int
    date: str = Field(description="The game's date, YYYY-MM-DD.")
    season: int = Field(description="The year the season started: 2023 is the 2023-24 season.")
    status: str | None = None
    period: int | None = None
    time: str | None = None
    postseason: bool = False
    home_team_score: int | None = None
    visitor_team_score: int | None = None
    home_team: Team | None = None
    visitor_team: Team | None = None


class GameRef(_Upstream):
    """A game inside a stat line: the team ids instead of the nested teams."""

    id: int
    date: str
    season: int
    status: str | None = None
    postseason: bool = False
    home_team_id: int | None = None
    visitor_team_id: int | None = None
    home_team_score: int | None = None
    visitor_team_score: int | None = None


class PlayerRef(_Upstream):
    """A player inside a stat line."""

    id: int
    first_name: str
    last_name: str
    position: str | None = None
    team_id: int | None = None


class StatLine(_Upstream):
    min: str | None = Field(default=None, description="Minutes played (MM or MM:SS).")
    fgm: float | None = None
    fga: float | None = None
    fg_pct: float | None = Field(default=None, description="Field goal percentage as a fraction (0.5 is 50%).")
    fg3m: float | None = None
    fg3a: float | None = None
    fg3_pct: float | None = None
    ftm: float | None = None
    fta: float | None = None
    ft_pct: float | None = None
    oreb: float | None = None
    dreb: float | None = None
    reb: float | None = None
    ast: float | None = None
    stl: float | None = None
    blk: float | None = None
    turnover: float | None = None
    pf: float | None = None
    pts: float | None = None


class Stat(StatLine):
    id: int
    player: PlayerRef | None = None
    team: Team | None = None
    game: GameRef | None = None


class SeasonAverage(StatLine):
    player_id: int
    season: int
    games_played: int


class Meta(BaseModel):
    next_cursor: int | None = Field(default=None, description="Pass as `cursor` to get the next page (upstream API).")
    per_page: int | None = None
    truncated: bool = Field(default=False, description="True when results were left out to keep the response small.")
    note: str | None = None


class TeamList(BaseModel):
    data: list[Team]
    meta: Meta = Field(default_factory=Meta)


class PlayerList(BaseModel):
    data: list[Player]
    meta: Meta = Field(default_factory=Meta)


class GameList(BaseModel):
    data: list[Game]
    meta: Meta = Field(default_factory=Meta)


class StatList(BaseModel):
    data: list[Stat]
    meta: Meta = Field(default_factory=Meta)


class SeasonAverageList(BaseModel):
    data: list[SeasonAverage]
    meta: Meta = Field(default_factory=Meta)


@dataclass(frozen=True)
class PlayerFilter:
    search: str | None = None
    player_ids: tuple[int, ...] = ()
    team_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class GameFilter:
    seasons: tuple[int, ...] = ()
    dates: tuple[date, ...] = ()
    team_ids: tuple[int, ...] = ()
    game_ids: tuple[int, ...] = ()
    start_date: date | None = None
    end_date: date | None = None
    postseason: bool | None = None


@dataclass(frozen=True)
class StatFilter:
    player_ids: tuple[int, ...] = ()
    dates: tuple[date, ...] = ()
    game_ids: tuple[int, ...] = ()
    seasons: tuple[int, ...] = ()
    team_ids: tuple[int, ...] = ()
    start_date: date | None = None
    end_date: date | None = None
    postseason: bool | None = None
