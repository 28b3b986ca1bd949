"""`oauth` as an authentication method: the AuthMethod contract over the plugin's own authorization server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from authlib.oauth2.rfc6749.util import scope_to_list
from fastapi import APIRouter, HTTPException, Request
from sqlalchemy import MetaData
from starlette.routing import Route

from plugkit import ratelimit
from plugkit.auth import tables
from plugkit.auth.credentials import read_credential, unauthorized
from plugkit.auth.oauth.endpoints import AuthorizationServer
from plugkit.auth.oauth.metadata import AUTHORIZE_PATH, TOKEN_PATH
from plugkit.auth.principal import Principal
from plugkit.manifest import OAuthAuth
from plugkit.settings import AuthKind, PluginSettings
from plugkit.storage import Database


class OAuthMethod:
    """Bearer access tokens issued by the plugin's own authorization server, each bound to the resource (the REST
    API or the MCP endpoint of this plugin) it was issued for."""

    kind: AuthKind = "oauth"

    def __init__(self, settings: PluginSettings, database: Database) -> None:
        self.db = database
        self.settings = settings
        self.server = AuthorizationServer(settings, database)
        self.clients, self.users, self.limiter = self.server.clients, self.server.users, self.server.limiter
        self._router = self.server.router()

    def manifest_auth(self, base_url: str) -> OAuthAuth:
        base = base_url.rstrip("/")
        return OAuthAuth(
            client_url=f"{base}{AUTHORIZE_PATH}",
            authorization_url=f"{base}{TOKEN_PATH}",
            scope=self.settings.oauth_scope,
            authorization_content_type=self.settings.oauth_content_type,
            verification_tokens=dict(self.settings.verification_tokens),
        )

    def security_scheme(self) -> dict[str, Any] | None:
        return {
            "type": "oauth2",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": AUTHORIZE_PATH,
                    "tokenUrl": TOKEN_PATH,
                    "refreshUrl": TOKEN_PATH,
                    "scopes": {s: "use the plugin on your behalf" for s in sorted(self.server.scopes)},
                }
            },
        }

    def _challenge(self, request: Request, refusal: HTTPException) -> HTTPException:
        """The 401 with the RFC 9728 `resource_metadata` (and the scope to ask for) added to its challenge."""
        headers = dict(refusal.headers or {})
        scope = " ".join(sorted(self.server.scopes))
        challenge = headers.get("WWW-Authenticate", "Bearer")
        headers["WWW-Authenticate"] = (
            f'{challenge}, scope="{scope}", resource_metadata="{self.server.resource_metadata_url(request)}"'
        )
        return HTTPException(refusal.status_code, refusal.detail, headers=headers)

    async def authenticate(self, request: Request) -> Principal:
        try:
            token = read_credential(request, "bearer")
        except HTTPException as exc:
            raise self._challenge(request, exc) from None
        row = await self.server.tokens.access(token)
        if row is None:
            refusal = unauthorized("bearer", "invalid, expired or revoked access token", error="invalid_token")
            raise self._challenge(request, refusal)
        if row.audience not in self.server.audience(request).allowed:
            refusal = unauthorized("bearer", "the access token was issued for another resource", error="invalid_token")
            raise self._challenge(request, refusal)
        return Principal(method="oauth", user_id=row.user_id, scopes=frozenset(scope_to_list(row.scope) or []))

    def resource_metadata_route(self, path: str) -> Route:
        """The RFC 9728 metadata route of another resource this plugin serves at `path` (its MCP endpoint)."""
        return self.server.resource_metadata_route(path)

    def routers(self) -> Sequence[APIRouter]:
        return (self._router,)

    def metadata(self) -> Sequence[MetaData]:
        return (tables.metadata, ratelimit.metadata)
