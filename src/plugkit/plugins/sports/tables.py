"""The local dataset's tables (SQLite)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table

from plugkit.schema import versioned

metadata = versioned(MetaData(), "sports", "plugkit.plugins.sports:migrations")

teams = Table(
    "teams",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("abbreviation", String(8)),
    Column("city", String(60)),
    Column("name", String(60)),
    Column("full_name", String(120)),
    Column("conference", String(10)),
    Column("division", String(20)),
)

# Player and box-score ids are 48-bit (the importer derives them from names and games): BIGINT on PostgreSQL
# (sports_0002); SQLite's INTEGER holds 64 bits either way.
players = Table(
    "players",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("first_name", String(80), nullable=False),
    Column("last_name", String(80), nullable=False),
    Column("search_name", String(160), nullable=False, index=True, doc="lower case, no accents or dots"),
    Column("position", String(10)),
    Column("height", String(10)),
    Column("weight", String(10)),
    Column("jersey_number", String(10)),
    Column("college", String(120)),
    Column("country", String(60)),
    Column("draft_year", Integer),
    Column("draft_round", Integer),
    Column("draft_number", Integer),
    Column("team_id", Integer, ForeignKey("teams.id")),
    Column("last_seen", String(10), doc="date of the latest game that set team_id"),
)

games = Table(
    "games",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("date", String(10), nullable=False, index=True),
    Column("season", Integer, nullable=False, index=True),
    Column("status", String(20)),
    Column("period", Integer),
    Column("time", String(20)),
    Column("postseason", Boolean, nullable=False, default=False),
    Column("home_team_id", Integer, ForeignKey("teams.id"), index=True),
    Column("visitor_team_id", Integer, ForeignKey("teams.id"), index=True),
    Column("home_team_score", Integer),
    Column("visitor_team_score", Integer),
)

STAT_FIELDS = (
    "fgm",
    "fga",
    "fg_pct",
    "fg3m",
    "fg3a",
    "fg3_pct",
    "ftm",
    "fta",
    "ft_pct",
    "oreb",
    "dreb",
    "reb",
    "ast",
    "stl",
    "blk",
    "turnover",
    "pf",
    "pts",
)
COUNT_FIELDS = tuple(f for f in STAT_FIELDS if not f.endswith("_pct"))

stats = Table(
    "stats",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("player_id", BigInteger, ForeignKey("players.id"), nullable=False, index=True),
    Column("team_id", Integer, ForeignKey("teams.id")),
    Column("game_id", Integer, ForeignKey("games.id"), nullable=False, index=True),
    Column("min", String(10)),
    Column("minutes", Float, doc="minutes as a number, for averages"),
    *(Column(name, Float) for name in STAT_FIELDS),
)
Index("ix_stats_player_game", stats.c.player_id, stats.c.game_id, unique=True)

# Each player's per-game averages in a season (regular season or playoffs), as /season_averages answers them: derived
# from the stat lines when they are imported (plugkit.plugins.sports.averages), so a question reads one row a player
# instead of summing a season of box scores (sports_0003).
season_averages = Table(
    "season_averages",
    metadata,
    Column("season", Integer, primary_key=True, autoincrement=False),
    Column("postseason", Boolean, primary_key=True),
    Column("player_id", BigInteger, primary_key=True, autoincrement=False),
    Column("games_played", Integer, nullable=False),
    Column("min", String(10), doc="average minutes, MM:SS"),
    *(Column(name, Float) for name in STAT_FIELDS),
)
