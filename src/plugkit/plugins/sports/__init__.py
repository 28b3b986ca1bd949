"""The sports stats plugin: NBA players, teams, games, box-score stats and season averages, from a local dataset
or a balldontlie-compatible upstream API."""
