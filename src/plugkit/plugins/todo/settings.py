"""Settings of the TODO plugin."""

from __future__ import annotations

from plugkit.settings import PluginSettings


class TodoSettings(PluginSettings):
    port: int = 5002
