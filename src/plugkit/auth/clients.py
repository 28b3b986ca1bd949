"""OAuth clients (the model host is one): id, hashed secret, the redirect URIs it may use, and how it was made."""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from plugkit.auth import tables
from plugkit.auth.credentials import hash_secret, new_secret, secrets_equal, utcnow
from plugkit.storage import Database

# The callbacks ChatGPT used: `*` stands for one path segment (the plugin or GPT id).
DEFAULT_REDIRECT_URIS = (
    "https://chat.openai.com/aip/*/oauth/callback",
    "https://chatgpt.com/aip/g-*/oauth/callback",
)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

ClientKind = Literal["operator", "registered", "metadata"]
AuthMethodName = Literal["none", "client_secret_post", "client_secret_basic"]


def check_redirect_uri(uri: str) -> str:
    """A registrable redirect URI: absolute http(s), no fragment; `*` only inside the path."""
    parts = urlsplit(uri.replace("*", "x"))
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.fragment:
        raise ValueError(f"redirect URI {uri!r} must be an absolute http(s) URL without a fragment")
    if "*" in urlsplit(uri).netloc or "*" in (urlsplit(uri).query or ""):
        raise ValueError(f"redirect URI {uri!r} may use * only in its path")
    return uri


def is_loopback_host(host: str | None) -> bool:
    """127.0.0.1 (any 127/8 address), [::1] or localhost: where native and command-line clients listen."""
    if not host:
        return False
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _loopback_match(uri: str, entry: str) -> bool:
    """RFC 8252 section 7.3: a loopback redirect URI matches whatever port the native client opened."""
    given, registered = urlsplit(uri), urlsplit(entry)
    return (
        given.scheme == registered.scheme == "http"
        and is_loopback_host(registered.hostname)
        and given.hostname == registered.hostname
        and given.path == registered.path
        and given.query == registered.query
        and not given.fragment
        and not given.username
    )


def redirect_uri_allowed(uri: str, registered: list[str]) -> bool:
    """An exact match, a match of a registered pattern whose `*` stands for one non-empty path segment, or a
    loopback URI differing only in its port."""
    for entry in registered:
        if "*" not in entry:
            if secrets.compare_digest(uri.encode(), entry.encode()) or _loopback_match(uri, entry):
                return True
            continue
        pattern = "^" + "[^/?#]+".join(re.escape(part) for part in entry.split("*")) + "$"
        if re.match(pattern, uri):
            return True
    return False


@dataclass(frozen=True)
class Client:
    """A client as the authorization server knows it."""

    client_id: str
    redirect_uris: list[str]
    name: str | None
    kind: ClientKind = "operator"
    auth_method: AuthMethodName = "client_secret_post"
    grant_types: list[str] = field(default_factory=lambda: ["authorization_code", "refresh_token"])
    scope: str | None = None

    @property
    def public(self) -> bool:
        """A client without a secret (a native app, a browser app, a metadata-document client)."""
        return self.auth_method == "none"

    @property
    def requires_pkce(self) -> bool:
        """PKCE S256 is required of every client but those an operator made for the 2023 plugin host."""
        return self.kind != "operator" or self.public


@dataclass(frozen=True)
class Registration:
    """The validated metadata of an RFC 7591 registration request."""

    redirect_uris: list[str]
    auth_method: AuthMethodName
    grant_types: list[str]
    name: str | None
    scope: str | None

    def as_response(self, client_id: str, secret: str | None, issued_at: datetime) -> dict[str, Any]:
        """The RFC 7591 section 3.2.1 client information response."""
        body: dict[str, Any] = {
            "client_id": client_id,
            "client_id_issued_at": int(issued_at.timestamp()),
            "redirect_uris": self.redirect_uris,
            "token_endpoint_auth_method": self.auth_method,
            "grant_types": self.grant_types,
            "response_types": ["code"],
        }
        if secret is not None:
            body["client_secret"] = secret
            body["client_secret_expires_at"] = 0
        if self.name is not None:
            body["client_name"] = self.name
        if self.scope is not None:
            body["scope"] = self.scope
        return body


def _client(row: Row[Any]) -> Client:
    return Client(
        client_id=row.client_id,
        redirect_uris=json.loads(row.redirect_uris),
        name=row.name,
        kind=row.kind,
        auth_method=row.auth_method,
        grant_types=json.loads(row.grant_types),
        scope=row.scope,
    )


class ClientStore:
    """The clients kept in the database: made by an operator, or registered by themselves."""

    def __init__(self, database: Database) -> None:
        self.db = database

    async def create(self, redirect_uris: list[str] | None = None, name: str | None = None) -> tuple[str, str]:
        """Make a confidential client as an operator; returns (client_id, client_secret). The secret is shown once
        and stored hashed. PKCE stays optional for it, as the 2023 plugin host did not send it."""
        uris = [check_redirect_uri(u) for u in (redirect_uris or DEFAULT_REDIRECT_URIS)]
        client_id, secret = new_secret("pkc", 12), new_secret("pks")
        async with self.db.write() as session:
            await session.execute(
                insert(tables.oauth_clients).values(
                    client_id=client_id,
                    secret_hash=hash_secret(secret),
                    redirect_uris=json.dumps(uris),
                    name=name,
                    created_at=utcnow(),
                    kind="operator",
                    auth_method="client_secret_post",
                )
            )
        return client_id, secret

    async def register(self, registration: Registration, address: str) -> tuple[str, str | None, datetime]:
        """Store a dynamically registered client; (client_id, the secret or None for a public client, when)."""
        client_id = new_secret("pkd", 12)
        secret = None if registration.auth_method == "none" else new_secret("pks")
        now = utcnow()
        async with self.db.write() as session:
            await session.execute(
                insert(tables.oauth_clients).values(
                    client_id=client_id,
                    secret_hash=hash_secret(secret or new_secret("none")),  # a public client is never given one
                    redirect_uris=json.dumps(registration.redirect_uris),
                    name=registration.name,
                    created_at=now,
                    kind="registered",
                    auth_method=registration.auth_method,
                    grant_types=json.dumps(registration.grant_types),
                    scope=registration.scope,
                    registered_from=address[:100],
                )
            )
        return client_id, secret, now

    async def count_registered(self) -> int:
        t = tables.oauth_clients
        async with self.db.read() as session:
            return int((await session.execute(select(func.count()).where(t.c.kind == "registered"))).scalar_one())

    async def expire_unused(self, before: datetime) -> None:
        """Forget registered clients made before `before` that never redeemed a code."""
        t = tables.oauth_clients
        async with self.db.write() as session:
            await session.execute(
                delete(t).where(t.c.kind == "registered", t.c.used_at.is_(None), t.c.created_at < before)
            )

    async def mark_used(self, client_id: str) -> None:
        t = tables.oauth_clients
        async with self.db.write() as session:
            await session.execute(
                update(t).where(t.c.client_id == client_id, t.c.used_at.is_(None)).values(used_at=utcnow())
            )

    async def get(self, client_id: str) -> Client | None:
        t = tables.oauth_clients
        async with self.db.read() as session:
            row = (await session.execute(select(t).where(t.c.client_id == client_id))).first()
        return _client(row) if row is not None else None

    async def authenticate(self, client_id: str, secret: str) -> Client | None:
        """The confidential client, when the secret is its own (compared in constant time)."""
        t = tables.oauth_clients
        async with self.db.read() as session:
            row = (await session.execute(select(t).where(t.c.client_id == client_id))).first()
        expected = row.secret_hash if row is not None else hash_secret("no such client")
        if not secrets_equal(hash_secret(secret), expected) or row is None or row.auth_method == "none":
            return None
        return _client(row)

    async def list(self) -> list[Client]:
        t = tables.oauth_clients
        async with self.db.read() as session:
            rows = (await session.execute(select(t).order_by(t.c.created_at))).all()
        return [_client(r) for r in rows]

    async def approved_by(self, client_id: str, user_id: str) -> bool:
        """Whether the user has allowed this client before."""
        t = tables.oauth_approvals
        query = select(t.c.user_id).where(t.c.client_id == client_id, t.c.user_id == user_id)
        async with self.db.read() as session:
            return (await session.execute(query)).first() is not None

    async def approve(self, client_id: str, user_id: str) -> None:
        """Remember that `user_id` allowed the client."""
        dialect_insert = sqlite_insert if self.db.is_sqlite else pg_insert
        statement = (
            dialect_insert(tables.oauth_approvals)
            .values(client_id=client_id, user_id=user_id, approved_at=utcnow())
            .on_conflict_do_nothing()
        )
        async with self.db.write() as session:
            await session.execute(statement)
