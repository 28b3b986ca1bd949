"""Test support: the official `mcp` SDK client's OAuthClientProvider, with a person who signs in through the form."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from tests.auth.oauth_flow import CONFIRM_TITLE, PASSWORD, confirm_if_asked, query_of, request_id_of


class MemoryStorage:
    """The SDK's TokenStorage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


@dataclass
class Person:
    """Opens the authorization URL the client hands over and submits the sign-in form as a browser submits it (a
    plain form POST), then hands the redirect's query back to the client as its callback would."""

    username: str = "alice"
    password: str = PASSWORD
    pages: list[str] = field(default_factory=list)
    authorization_urls: list[str] = field(default_factory=list)
    _result: dict[str, str] = field(default_factory=dict)

    async def redirect_handler(self, url: str) -> None:
        self.authorization_urls.append(url)
        async with httpx.AsyncClient(timeout=30) as browser:
            page = await browser.get(url)
            assert page.status_code == 200, page.text
            self.pages.append(page.text)
            form = {"request_id": request_id_of(page.text), "username": self.username, "password": self.password}
            action = str(page.url.copy_with(query=None))
            answer = await browser.post(action, data={**form, "decision": "allow"})
            if CONFIRM_TITLE in answer.text:
                self.pages.append(answer.text)
            answer = await confirm_if_asked(browser, answer, action)
        assert answer.status_code == 303, answer.text
        self._result = query_of(answer.headers["location"])

    async def callback_handler(self) -> AuthorizationCodeResult:
        return AuthorizationCodeResult(
            code=self._result["code"], state=self._result.get("state"), iss=self._result.get("iss")
        )


def provider(
    server_url: str,
    person: Person,
    redirect_uri: str,
    *,
    auth_method: str | None = None,
    client_metadata_url: str | None = None,
) -> tuple[OAuthClientProvider, MemoryStorage]:
    """An OAuthClientProvider for the MCP server at `server_url`, registering itself (or naming a client ID metadata
    document: the SDK accepts only https for one, so a plain-http test document is set after construction)."""
    storage = MemoryStorage()
    metadata: dict[str, Any] = {"redirect_uris": [redirect_uri], "client_name": "SDK test client"}
    if auth_method is not None:
        metadata["token_endpoint_auth_method"] = auth_method
    oauth = OAuthClientProvider(
        server_url=server_url,
        client_metadata=OAuthClientMetadata.model_validate(metadata),
        storage=storage,
        redirect_handler=person.redirect_handler,
        callback_handler=person.callback_handler,
    )
    oauth.context.client_metadata_url = client_metadata_url
    return oauth, storage


@contextmanager
def document_server(make: Any) -> Iterator[str]:
    """A plain-http server on 127.0.0.1 serving one JSON document, `make(url)`, at /client.json; yields the URL."""
    holder: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            body = holder["body"]
            self.send_response(200 if self.path == "/client.json" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    url = f"http://127.0.0.1:{server.server_address[1]}/client.json"
    holder["body"] = json.dumps(make(url)).encode()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
