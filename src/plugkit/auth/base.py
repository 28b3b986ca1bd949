"""The contract every authentication method fulfils; the app factory knows methods only through it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from fastapi import APIRouter, Request
from sqlalchemy import MetaData

from plugkit.auth.principal import Principal
from plugkit.manifest import NoAuth, OAuthAuth, ServiceHttpAuth, UserHttpAuth
from plugkit.settings import AuthKind


class AuthMethod(Protocol):
    """An authentication method: what the manifest says, how a request is checked, which routes it adds."""

    kind: AuthKind

    def manifest_auth(self, base_url: str) -> NoAuth | UserHttpAuth | ServiceHttpAuth | OAuthAuth:
        """The manifest's `auth` block for a plugin reached at `base_url`."""
        ...

    def security_scheme(self) -> dict[str, Any] | None:
        """The OpenAPI security scheme protecting API operations, or None."""
        ...

    async def authenticate(self, request: Request) -> Principal:
        """The principal behind a request; raises HTTPException(401) with WWW-Authenticate when there is none."""
        ...

    def routers(self) -> Sequence[APIRouter]:
        """Public routes the method adds (sign-in pages, token endpoint)."""
        ...

    def metadata(self) -> Sequence[MetaData]:
        """Tables the method keeps in the plugin's database."""
        ...
