"""The pages a person sees during sign-in, rendered from the Jinja templates shipped in this package."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi.responses import HTMLResponse

from plugkit.auth.clients import Client
from plugkit.auth.oauth.errors import NO_STORE
from plugkit.auth.oauth.metadata import AUTHORIZE_PATH

if TYPE_CHECKING:
    from jinja2 import Environment

HEADERS = {
    **NO_STORE,
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; "
    "style-src 'unsafe-inline'; form-action 'self' https: http:; frame-ancestors 'none'",
}


@cache
def _environment() -> Environment:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=PackageLoader("plugkit.auth.oauth", "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
    )


def _render(template: str, status: int, **context: Any) -> HTMLResponse:
    return HTMLResponse(_environment().get_template(template).render(**context), status_code=status, headers=HEADERS)


def message_page(title: str, message: str, status: int = 400) -> HTMLResponse:
    """A page that tells the person what went wrong (or what happened) in one sentence."""
    return _render("message.html", status, title=title, message=message)


def _client_name(client: Client) -> str:
    """The client's registered or metadata name, else the host of its metadata document's URL."""
    name = client.name or (urlsplit(client.client_id).hostname if client.kind == "metadata" else None)
    return name or "An application"


def confirm_page(
    request_id: str, client: Client, redirect_uri: str, scope: str, plugin_name: str, username: str
) -> HTMLResponse:
    """After sign-in, for a client the person has not allowed before: says so, and asks them to allow or deny it."""
    return _render(
        "confirm.html",
        200,
        title="Allow a new application?",
        client_name=_client_name(client),
        plugin_name=plugin_name,
        redirect_host=urlsplit(redirect_uri).hostname or redirect_uri,
        scope=scope,
        username=username,
        request_id=request_id,
        action=AUTHORIZE_PATH,
    )


def sign_in_page(
    request_id: str,
    client: Client,
    redirect_uri: str,
    scope: str,
    plugin_name: str,
    *,
    error: str | None = None,
    username: str = "",
    status: int = 200,
) -> HTMLResponse:
    """The sign-in and consent form: it names the client and the host the person will be sent back to."""
    return _render(
        "sign_in.html",
        status,
        title="Sign in",
        client_name=_client_name(client),
        plugin_name=plugin_name,
        redirect_host=urlsplit(redirect_uri).hostname or redirect_uri,
        scope=scope,
        error=error,
        username=username,
        request_id=request_id,
        action=AUTHORIZE_PATH,
    )
