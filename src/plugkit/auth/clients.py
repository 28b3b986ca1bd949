"""OAuth clients (the model host is one): id, hashed secret, and the redirect URIs it may use."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import insert, select

from plugkit.auth import tables
from plugkit.auth.credentials import hash_secret, new_secret, secrets_equal, utcnow
from plugkit.storage import Database

# The callbacks ChatGPT used: `*` stands for one path segment (the plugin or GPT id).
DEFAULT_REDIRECT_URIS = (
    "https://chat.openai.com/aip/*/oauth/callback",
    "https://chatgpt.com/aip/g-*/oauth/callback",
)


def check_redirect_uri(uri: str) -> str:
    """A registrable redirect URI: absolute http(s), no fragment; `*` only inside the path."""
    parts = urlsplit(uri.replace("*", "x"))
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.fragment:
        raise ValueError(f"redirect URI {uri!r} must be an absolute http(s) URL without a fragment")
    if "*" in urlsplit(uri).netloc or "*" in (urlsplit(uri).query or ""):
        raise ValueError(f"redirect URI {uri!r} may use * only in its path")
    return uri


def redirect_uri_allowed(uri: str, registered: list[str]) -> bool:
    """An exact match, or a match of a registered pattern whose `*` stands for one non-empty path segment."""
    for entry in registered:
        if "*" not in entry:
            if secrets.compare_digest(uri.encode(), entry.encode()):
                return True
            continue
        pattern = "^" + "[^/?#]+".join(re.escape(part) for part in entry.split("*")) + "$"
        if re.match(pattern, uri):
            return True
    return False


@dataclass(frozen=True)
class Client:
    client_id: str
    redirect_uris: list[str]
    name: str | None


class ClientStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    async def create(self, redirect_uris: list[str] | None = None, name: str | None = None) -> tuple[str, str]:
        """Register a client; returns (client_id, client_secret). The secret is shown once and stored hashed."""
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
                )
            )
        return client_id, secret

    async def get(self, client_id: str) -> Client | None:
        t = tables.oauth_clients
        async with self.db.read() as session:
            row = (await session.execute(select(t).where(t.c.client_id == client_id))).first()
        if row is None:
            return None
        return Client(client_id=row.client_id, redirect_uris=json.loads(row.redirect_uris), name=row.name)

    async def authenticate(self, client_id: str, secret: str) -> Client | None:
        """The client, when the secret is its own (compared in constant time)."""
        t = tables.oauth_clients
        async with self.db.read() as session:
            row = (await session.execute(select(t).where(t.c.client_id == client_id))).first()
        expected = row.secret_hash if row is not None else hash_secret("no such client")
        if not secrets_equal(hash_secret(secret), expected) or row is None:
            return None
        return Client(client_id=row.client_id, redirect_uris=json.loads(row.redirect_uris), name=row.name)

    async def list(self) -> list[Client]:
        t = tables.oauth_clients
        async with self.db.read() as session:
            rows = (await session.execute(select(t).order_by(t.c.created_at))).all()
        return [Client(client_id=r.client_id, redirect_uris=json.loads(r.redirect_uris), name=r.name) for r in rows]
