"""Build the configured authentication method."""

from __future__ import annotations

from plugkit.auth.base import AuthMethod
from plugkit.auth.none import NoAuthMethod
from plugkit.settings import PluginSettings
from plugkit.storage import Database


def build_auth_method(settings: PluginSettings, database: Database) -> AuthMethod:
    """The method named by `settings.auth`, keeping its state in `database`."""
    if settings.auth == "none":
        return NoAuthMethod()
    raise ValueError(f"auth method {settings.auth!r} is not available")
