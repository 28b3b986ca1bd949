"""The 30 NBA teams with balldontlie's ids (1-30, alphabetical by city), and the old abbreviations they carried."""

from __future__ import annotations

from plugkit.plugins.sports.models import Team

# (abbreviation, city, name, conference, division)
_TEAMS: list[tuple[str, str, str, str, str]] = [
    ("ATL", "Atlanta", "Hawks", "East", "Southeast"),
    ("BOS", "Boston", "Celtics", "East", "Atlantic"),
    ("BKN", "Brooklyn", "Nets", "East", "Atlantic"),
    ("CHA", "Charlotte", "Hornets", "East", "Southeast"),
    ("CHI", "Chicago", "Bulls", "East", "Central"),
    ("CLE", "Cleveland", "Cavaliers", "East", "Central"),
    ("DAL", "Dallas", "Mavericks", "West", "Southwest"),
    ("DEN", "Denver", "Nuggets", "West", "Northwest"),
    ("DET", "Detroit", "Pistons", "East", "Central"),
    ("GSW", "Golden State", "Warriors", "West", "Pacific"),
    ("HOU", "Houston", "Rockets", "West", "Southwest"),
    ("IND", "Indiana", "Pacers", "East", "Central"),
    ("LAC", "LA", "Clippers", "West", "Pacific"),
    ("LAL", "Los Angeles", "Lakers", "West", "Pacific"),
    ("MEM", "Memphis", "Grizzlies", "West", "Southwest"),
    ("MIA", "Miami", "Heat", "East", "Southeast"),
    ("MIL", "Milwaukee", "Bucks", "East", "Central"),
    ("MIN", "Minnesota", "Timberwolves", "West", "Northwest"),
    ("NOP", "New Orleans", "Pelicans", "West", "Southwest"),
    ("NYK", "New York", "Knicks", "East", "Atlantic"),
    ("OKC", "Oklahoma City", "Thunder", "West", "Northwest"),
    ("ORL", "Orlando", "Magic", "East", "Southeast"),
    ("PHI", "Philadelphia", "76ers", "East", "Atlantic"),
    ("PHX", "Phoenix", "Suns", "West", "Pacific"),
    ("POR", "Portland", "Trail Blazers", "West", "Northwest"),
    ("SAC", "Sacramento", "Kings", "West", "Pacific"),
    ("SAS", "San Antonio", "Spurs", "West", "Southwest"),
    ("TOR", "Toronto", "Raptors", "East", "Atlantic"),
    ("UTA", "Utah", "Jazz", "West", "Northwest"),
    ("WAS", "Washington", "Wizards", "East", "Southeast"),
]

ALIASES = {
    "NJN": "BKN",
    "BRK": "BKN",
    "NOH": "NOP",
    "NOK": "NOP",
    "NO": "NOP",
    "SEA": "OKC",
    "PHO": "PHX",
    "GS": "GSW",
    "NY": "NYK",
    "SA": "SAS",
    "UTAH": "UTA",
    "WSH": "WAS",
    "CHO": "CHA",
    "CHH": "CHA",
}

TEAMS: list[Team] = [
    Team(id=i, abbreviation=abbr, city=city, name=name, full_name=f"{city} {name}", conference=conf, division=div)
    for i, (abbr, city, name, conf, div) in enumerate(_TEAMS, start=1)
]
TEAM_BY_ABBREVIATION: dict[str, Team] = {abbr: team for (abbr, *_), team in zip(_TEAMS, TEAMS, strict=True)}


def team_for(abbreviation: str) -> Team:
    """The team an abbreviation (current or historical) names; KeyError when none does."""
    code = abbreviation.strip().upper()
    return TEAM_BY_ABBREVIATION[ALIASES.get(code, code)]
