"""`service_http` (one service token) and `user_http` (a token per user, stored hashed)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import MetaData, bindparam, insert, select, update

from plugkit.auth import tables
from plugkit.auth.credentials import (
    Scheme,
    as_utc,
    hash_secret,
    new_secret,
    read_credential,
    secrets_equal,
    unauthorized,
    utcnow,
)
from plugkit.auth.principal import Principal
from plugkit.manifest import ServiceHttpAuth, UserHttpAuth
from plugkit.settings import AuthKind, PluginSettings
from plugkit.storage import Database, PreparedRead

MIN_SERVICE_TOKEN_CHARS = 16
_PLACEHOLDERS = ("changeme", "yourtoken", "yoursecret", "yourkey", "replaceme", "placeholder", "example", "insert")
USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,200}$")


class AuthConfigError(ValueError):
    """The configured auth method cannot run as configured (the server refuses to start)."""


def http_security_scheme(scheme: Scheme) -> dict[str, Any]:
    return {"type": "http", "scheme": scheme}


def load_service_token(settings: PluginSettings) -> str:
    """The service token from `service_token_file` or `service_token`; refuses a missing, short or placeholder one."""
    if settings.service_token_file is not None:
        try:
            token = settings.service_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AuthConfigError(f"cannot read the service token file {settings.service_token_file}: {exc}") from None
    elif settings.service_token is not None:
        token = settings.service_token.get_secret_value().strip()
    else:
        raise AuthConfigError("service_http needs a token: set PLUGKIT_SERVICE_TOKEN or pass --service-token-file")
    if len(token) < MIN_SERVICE_TOKEN_CHARS:
        raise AuthConfigError(f"the service token is shorter than {MIN_SERVICE_TOKEN_CHARS} characters")
    normalised = re.sub(r"[^a-z0-9]", "", token.lower())
    if any(p in normalised for p in _PLACEHOLDERS) or len(set(token)) < 4 or token.startswith("<"):
        raise AuthConfigError(
            "the service token looks like a placeholder; generate one: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    if not re.fullmatch(r"[A-Za-z0-9\-._~+/]+=*", token):
        raise AuthConfigError(
            "the service token has characters a bearer token cannot carry (use letters, digits and -._~+/)"
        )
    return token


class ServiceHttpMethod:
    """One token shared by the model host, sent on every call."""

    kind: AuthKind = "service_http"

    def __init__(self, token: str, scheme: Scheme = "bearer", verification_tokens: dict[str, str] | None = None):
        self._token = token
        self.scheme: Scheme = scheme
        self.verification_tokens = dict(verification_tokens or {})

    @classmethod
    def from_settings(cls, settings: PluginSettings) -> ServiceHttpMethod:
        return cls(load_service_token(settings), settings.auth_scheme, settings.verification_tokens)

    def manifest_auth(self, base_url: str) -> ServiceHttpAuth:
        return ServiceHttpAuth(authorization_type=self.scheme, verification_tokens=self.verification_tokens)

    def security_scheme(self) -> dict[str, Any] | None:
        return http_security_scheme(self.scheme)

    async def authenticate(self, request: Request) -> Principal:
        if not secrets_equal(read_credential(request, self.scheme), self._token):
            raise unauthorized(self.scheme, "invalid credentials", error="invalid_token")
        return Principal(method="service_http")

    def routers(self) -> Sequence[APIRouter]:
        return ()

    def metadata(self) -> Sequence[MetaData]:
        return ()


@dataclass(frozen=True)
class UserToken:
    """What `tokens list` shows: never the token, only a fingerprint of its hash."""

    id: int
    user_id: str
    label: str | None
    created_at: datetime
    revoked_at: datetime | None
    fingerprint: str


# Every request under user_http looks its token up: a prepared read (about 10x cheaper than building and executing
# the statement through SQLAlchemy per request on SQLite).
USER_FOR_TOKEN = PreparedRead.of(
    select(tables.user_tokens.c.user_id).where(
        tables.user_tokens.c.token_hash == bindparam("token_hash"), tables.user_tokens.c.revoked_at.is_(None)
    )
)


class UserTokenStore:
    """Per-user tokens in the plugin's database."""

    def __init__(self, database: Database) -> None:
        self.db = database

    async def create(self, user_id: str, label: str | None = None) -> tuple[int, str]:
        """Issue a token for `user_id`: returns its id and the token, which is not kept anywhere."""
        if not USERNAME.match(user_id):
            raise ValueError("a user name has 1-200 letters, digits or _.@-")
        token = new_secret("pkt")
        async with self.db.write() as session:
            result = await session.execute(
                insert(tables.user_tokens)
                .values(user_id=user_id, token_hash=hash_secret(token), label=label, created_at=utcnow())
                .returning(tables.user_tokens.c.id)
            )
            return int(result.scalar_one()), token

    async def list(self, user_id: str | None = None, *, include_revoked: bool = False) -> list[UserToken]:
        t = tables.user_tokens
        query = select(t).order_by(t.c.id)
        if user_id is not None:
            query = query.where(t.c.user_id == user_id)
        if not include_revoked:
            query = query.where(t.c.revoked_at.is_(None))
        async with self.db.read() as session:
            rows = (await session.execute(query)).all()
        return [
            UserToken(
                id=r.id,
                user_id=r.user_id,
                label=r.label,
                created_at=as_utc(r.created_at),
                revoked_at=as_utc(r.revoked_at) if r.revoked_at else None,
                fingerprint=r.token_hash[:12],
            )
            for r in rows
        ]

    async def revoke(self, *, token_id: int | None = None, user_id: str | None = None) -> int:
        """Revoke one token by id, or every token of a user; returns how many were revoked."""
        if token_id is None and user_id is None:
            raise ValueError("name a token id or a user")
        t = tables.user_tokens
        query = update(t).where(t.c.revoked_at.is_(None)).values(revoked_at=utcnow())
        if token_id is not None:
            query = query.where(t.c.id == token_id)
        if user_id is not None:
            query = query.where(t.c.user_id == user_id)
        async with self.db.write() as session:
            return int((await session.execute(query)).rowcount)  # type: ignore[attr-defined]

    async def user_for(self, token: str) -> str | None:
        row = await USER_FOR_TOKEN.first(self.db, token_hash=hash_secret(token))
        return None if row is None else str(row[0])


class UserHttpMethod:
    """A token per user, issued with `plugkit tokens create --user NAME`; the principal is that user."""

    kind: AuthKind = "user_http"

    def __init__(self, database: Database, scheme: Scheme = "bearer") -> None:
        self.tokens = UserTokenStore(database)
        self.scheme: Scheme = scheme

    def manifest_auth(self, base_url: str) -> UserHttpAuth:
        return UserHttpAuth(authorization_type=self.scheme)

    def security_scheme(self) -> dict[str, Any] | None:
        return http_security_scheme(self.scheme)

    async def authenticate(self, request: Request) -> Principal:
        user_id = await self.tokens.user_for(read_credential(request, self.scheme))
        if user_id is None:
            raise unauthorized(self.scheme, "invalid or revoked token", error="invalid_token")
        return Principal(method="user_http", user_id=user_id)

    def routers(self) -> Sequence[APIRouter]:
        return ()

    def metadata(self) -> Sequence[MetaData]:
        return (tables.metadata,)
