"""`none`: every request is anonymous."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import MetaData

from plugkit.auth.principal import ANONYMOUS, Principal
from plugkit.manifest import NoAuth
from plugkit.settings import AuthKind


class NoAuthMethod:
    kind: AuthKind = "none"

    def manifest_auth(self, base_url: str) -> NoAuth:
        return NoAuth()

    def security_scheme(self) -> dict[str, Any] | None:
        return None

    async def authenticate(self, request: Request) -> Principal:
        return ANONYMOUS

    def routers(self) -> Sequence[APIRouter]:
        return ()

    def metadata(self) -> Sequence[MetaData]:
        return ()
