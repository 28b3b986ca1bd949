"""RFC 7591 dynamic client registration: which registration requests are accepted, and why the others are not."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlsplit

from plugkit.auth.clients import AuthMethodName, Registration, is_loopback_host
from plugkit.auth.oauth.errors import InvalidClientMetadata, InvalidRedirectUri, printable
from plugkit.auth.oauth.metadata import AUTH_METHODS

MAX_REDIRECT_URIS = 10
MAX_URI_CHARS = 2000
MAX_NAME_CHARS = 200
GRANT_TYPES = ("authorization_code", "refresh_token")


def check_registered_redirect_uri(uri: object, where: str) -> str:
    """A redirect URI a client may register itself: https, or http on a loopback address (any port, as native
    clients use: RFC 8252 section 7.3); absolute, without fragment or user information."""
    if not isinstance(uri, str) or not uri:
        raise InvalidRedirectUri(f"{where} must be a non-empty string")
    if len(uri) > MAX_URI_CHARS:
        raise InvalidRedirectUri(f"{where} is longer than {MAX_URI_CHARS} characters")
    if any(c.isspace() or ord(c) < 0x20 or c in "*\\" for c in uri):
        raise InvalidRedirectUri(f"{where} contains a space, a control character, * or a backslash")
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError:
        raise InvalidRedirectUri(f"{where} is not a URL: {printable(uri)}") from None
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidRedirectUri(f"{where} must be an absolute https URL (or http on a loopback address)")
    if parts.fragment or "#" in uri:
        raise InvalidRedirectUri(f"{where} must not contain a fragment")
    if parts.username is not None or parts.password is not None:
        raise InvalidRedirectUri(f"{where} must not contain user information")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise InvalidRedirectUri(f"{where} uses http on {printable(host)}: only loopback addresses may use http")
    return uri


def _string_list(body: dict[str, Any], key: str, default: list[str]) -> list[str]:
    value = body.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidClientMetadata(f"{key} must be a list of strings")
    return cast(list[str], value)


def _optional_string(body: dict[str, Any], key: str, limit: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit or any(ord(c) < 0x20 for c in value):
        raise InvalidClientMetadata(f"{key} must be a string of at most {limit} printable characters")
    return value


def parse_registration(body: object, scopes: frozenset[str]) -> Registration:
    """The registration a request body asks for; InvalidRedirectUri or InvalidClientMetadata naming the field."""
    if not isinstance(body, dict):
        raise InvalidClientMetadata("the body must be a JSON object of client metadata")
    body = cast(dict[str, Any], body)
    uris = body.get("redirect_uris")
    if not isinstance(uris, list) or not uris:
        raise InvalidRedirectUri("redirect_uris is required: a list of 1 to 10 redirect URIs")
    if len(uris) > MAX_REDIRECT_URIS:
        raise InvalidRedirectUri(f"redirect_uris lists {len(uris)} URIs; at most {MAX_REDIRECT_URIS} are allowed")
    checked = [check_registered_redirect_uri(uri, f"redirect_uris[{i}]") for i, uri in enumerate(uris)]
    method = body.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in AUTH_METHODS:
        allowed = ", ".join(AUTH_METHODS)
        raise InvalidClientMetadata(
            f"token_endpoint_auth_method {printable(str(method))} is not supported; use {allowed}"
        )
    grant_types = _string_list(body, "grant_types", ["authorization_code"])
    unknown = [g for g in grant_types if g not in GRANT_TYPES]
    if unknown or "authorization_code" not in grant_types:
        raise InvalidClientMetadata("grant_types must include authorization_code and may add refresh_token only")
    response_types = _string_list(body, "response_types", ["code"])
    if response_types != ["code"]:
        raise InvalidClientMetadata("response_types may list only code")
    scope = _optional_string(body, "scope", 1000)
    if scope is not None:
        wanted = scope.split()
        extra = [s for s in wanted if s not in scopes]
        if extra:
            raise InvalidClientMetadata(f"scope names unknown scopes: {printable(' '.join(extra))}")
        scope = " ".join(sorted(set(wanted))) or None
    return Registration(
        redirect_uris=checked,
        auth_method=cast(AuthMethodName, method),
        grant_types=sorted(set(grant_types), key=GRANT_TYPES.index),
        name=_optional_string(body, "client_name", MAX_NAME_CHARS),
        scope=scope,
    )
