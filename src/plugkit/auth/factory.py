"""Build the configured authentication method."""

from __future__ import annotations

from plugkit.auth.base import AuthMethod
from plugkit.auth.bearer import AuthConfigError, ServiceHttpMethod, UserHttpMethod, load_service_token
from plugkit.auth.none import NoAuthMethod
from plugkit.auth.oauth import OAuthMethod
from plugkit.settings import PluginSettings
from plugkit.storage import Database

__all__ = ["AuthConfigError", "build_auth_method", "check_auth_settings"]


def check_auth_settings(settings: PluginSettings) -> None:
    """Raise AuthConfigError when the configured method cannot run (before any server starts)."""
    if settings.auth == "service_http":
        load_service_token(settings)


def build_auth_method(settings: PluginSettings, database: Database) -> AuthMethod:
    """The method named by `settings.auth`, keeping its state in `database`; AuthConfigError when it cannot run."""
    if settings.auth == "none":
        return NoAuthMethod()
    if settings.auth == "service_http":
        return ServiceHttpMethod.from_settings(settings)
    if settings.auth == "user_http":
        return UserHttpMethod(database, settings.auth_scheme)
    if settings.auth == "oauth":
        return OAuthMethod(settings, database)
    raise AuthConfigError(f"auth method {settings.auth!r} is not available")
