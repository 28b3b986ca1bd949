"""What the authorization server and the protected resource publish about themselves: RFC 8414 authorization server
metadata, RFC 9728 protected-resource metadata, and the RFC 8707 resource identifiers of the plugin."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

AUTHORIZE_PATH = "/oauth/authorize"
TOKEN_PATH = "/oauth/token"
REVOKE_PATH = "/oauth/revoke"
REGISTER_PATH = "/oauth/register"
AUTHORIZATION_SERVER_METADATA = "/.well-known/oauth-authorization-server"
OPENID_CONFIGURATION = "/.well-known/openid-configuration"
RESOURCE_METADATA = "/.well-known/oauth-protected-resource"
AUTH_METHODS = ["none", "client_secret_post", "client_secret_basic"]


def authorization_server_metadata(issuer: str, scopes: Iterable[str], *, registration: bool) -> dict[str, Any]:
    """RFC 8414 section 2 metadata of the plugin's authorization server; `issuer` is its public base URL."""
    document: dict[str, Any] = {
        "issuer": issuer,
        "authorization_endpoint": issuer + AUTHORIZE_PATH,
        "token_endpoint": issuer + TOKEN_PATH,
        "revocation_endpoint": issuer + REVOKE_PATH,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "scopes_supported": sorted(scopes),
        "client_id_metadata_document_supported": True,
        "authorization_response_iss_parameter_supported": True,
    }
    if registration:
        document["registration_endpoint"] = issuer + REGISTER_PATH
    return document


def protected_resource_metadata(base: str, path: str, scopes: Iterable[str], name: str) -> dict[str, Any]:
    """RFC 9728 section 2 metadata of the resource at `base + path` (path "" is the REST API at the root); the
    plugin is its own authorization server."""
    return {
        "resource": base + path,
        "authorization_servers": [base],
        "scopes_supported": sorted(scopes),
        "bearer_methods_supported": ["header"],
        "resource_name": name,
    }


def canonical_resource(uri: str) -> str | None:
    """An RFC 8707 resource as compared here: absolute, no fragment, lower-case scheme and host, no trailing slash;
    None when it is not an absolute URI."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc or parts.fragment or "#" in uri:
        return None
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}{query}"


def resources_of(base: str, paths: Iterable[str]) -> frozenset[str]:
    """The plugin's resource identifiers when reached at `base`: its base URL and each protected path (/mcp)."""
    found = {canonical_resource(base + path) for path in ("", *paths)}
    return frozenset(r for r in found if r is not None)
