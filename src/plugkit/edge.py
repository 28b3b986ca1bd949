"""The edge of a plugin: who is calling (the client address) and where the plugin is reached (its public base URL).

One answer each, used by the rate limits, the OAuth failure and registration limits, the manifest and the metadata."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Scope

from plugkit.settings import PluginSettings


def client_address(scope: Scope, settings: PluginSettings) -> str:
    """The caller's address: the first X-Forwarded-For hop when proxy headers are trusted, else the peer."""
    if settings.trust_proxy_headers:
        forwarded = dict(scope.get("headers") or ()).get(b"x-forwarded-for")
        if forwarded:
            return str(forwarded.decode("latin-1")).split(",")[0].strip()
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def public_base_url(request: Request, settings: PluginSettings) -> str:
    """The base URL the plugin is reached at: the configured public URL, else the request's own."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    # From the scope and the Host header: building `request.url` costs more than the rest of an authenticated request
    scheme, host = request.scope.get("scheme", "http"), request.headers.get("host") or request.url.netloc
    if settings.trust_proxy_headers:
        scheme = request.headers.get("x-forwarded-proto", scheme).split(",")[0].strip()
        host = request.headers.get("x-forwarded-host", host).split(",")[0].strip()
    return f"{scheme}://{host}"
