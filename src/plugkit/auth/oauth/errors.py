"""OAuth error responses: RFC 6749 section 5.2 JSON bodies, errors sent back to the redirect URI, and the errors of
the later RFCs (7591 registration, 8707 resource indicators) on Authlib's error type."""

from __future__ import annotations

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.base import OAuth2Error
from fastapi.responses import JSONResponse, RedirectResponse

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class TooManyAttempts(OAuth2Error):  # type: ignore[misc]
    """Failed client or password attempts over the limit: 429 with the RFC 6749 error body."""

    error = "temporarily_unavailable"
    status_code = 429


class InvalidTarget(OAuth2Error):  # type: ignore[misc]
    """RFC 8707 section 2: the resource is not one this server issues tokens for."""

    error = "invalid_target"
    status_code = 400


class InvalidRedirectUri(OAuth2Error):  # type: ignore[misc]
    """RFC 7591 section 3.2.2: a redirect URI of a registration request is not acceptable."""

    error = "invalid_redirect_uri"
    status_code = 400


class InvalidClientMetadata(OAuth2Error):  # type: ignore[misc]
    """RFC 7591 section 3.2.2: a field of a registration request is not acceptable."""

    error = "invalid_client_metadata"
    status_code = 400


class RegistrationRefused(OAuth2Error):  # type: ignore[misc]
    """Registration is turned off, or the server holds as many clients as it allows."""

    error = "access_denied"
    status_code = 403


def printable(text: str, limit: int = 60) -> str:
    """Client input made fit for an RFC 6749 error_description (printable ASCII without quote or backslash)."""
    return "".join(c if 0x20 <= ord(c) <= 0x7E and c not in '"\\' else "?" for c in text[:limit])


def oauth_error_response(exc: OAuth2Error, headers: dict[str, str] | None = None) -> JSONResponse:
    """The RFC 6749 section 5.2 error JSON."""
    status, body, extra = exc()
    response = JSONResponse(body, status_code=status, headers={**NO_STORE, **(headers or {})})
    for name, value in extra:
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def redirect_error(redirect_uri: str, exc: OAuth2Error, state: str | None, issuer: str) -> RedirectResponse:
    """The error sent back to the client at its redirect URI (RFC 6749 section 4.1.2.1), with `iss` (RFC 9207)."""
    params = [(k, v) for k, v in exc.get_body() if k != "state"]
    if state:
        params.append(("state", state))
    params.append(("iss", issuer))
    return RedirectResponse(add_params_to_uri(redirect_uri, params), status_code=303, headers=NO_STORE)
