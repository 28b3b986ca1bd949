"""Persistence of the authorization server's state: pending sign-ins, codes and access/refresh token pairs.
Only hashes of the secrets are stored; every row is in the database, so workers share it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Row, bindparam, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from plugkit.auth import tables
from plugkit.auth.credentials import as_utc, hash_secret, new_secret, utcnow
from plugkit.storage import Database, PreparedRead

CODE_TTL = timedelta(minutes=10)
SIGN_IN_TTL = timedelta(minutes=10)
ACCESS_TTL = timedelta(hours=1)
REFRESH_TTL = timedelta(days=30)
PRUNE_AFTER = timedelta(days=1)


class AccessGrant(NamedTuple):
    """What a live access token grants: to whom, which scopes, for which resource."""

    user_id: str
    scope: str
    audience: str


# Every request under oauth looks its access token up: a prepared read (storage.PreparedRead).
ACCESS_BY_HASH = PreparedRead.of(
    select(
        tables.oauth_tokens.c.user_id,
        tables.oauth_tokens.c.scope,
        tables.oauth_tokens.c.audience,
        tables.oauth_tokens.c.access_expires_at,
    ).where(tables.oauth_tokens.c.access_hash == bindparam("access_hash"), tables.oauth_tokens.c.revoked_at.is_(None))
)


class TokenStore:
    """Reads and writes sign-ins, codes and tokens."""

    def __init__(self, database: Database) -> None:
        self.db = database

    async def access(self, token: str) -> AccessGrant | None:
        """The live (unrevoked, unexpired) token pair an access token belongs to."""
        row = await ACCESS_BY_HASH.first(self.db, access_hash=hash_secret(token))
        if row is None:
            return None
        user_id, scope, audience, expires = row
        if isinstance(expires, str):  # SQLite's driver value: the ISO text SQLAlchemy stored
            expires = datetime.fromisoformat(expires)
        if as_utc(expires) <= utcnow():
            return None
        return AccessGrant(user_id, scope, audience)

    async def start_sign_in(self, **values: Any) -> str:
        """Keep a validated authorization request; the one-time id the sign-in form carries."""
        request_id = new_secret("pkr")
        async with self.db.write() as session:
            await prune(session)
            await session.execute(
                insert(tables.oauth_requests).values(
                    id_hash=hash_secret(request_id), expires_at=utcnow() + SIGN_IN_TTL, **values
                )
            )
        return request_id

    async def pending_sign_in(self, request_id: str) -> Row[Any] | None:
        """The authorization request of a sign-in form, while it is unused and unexpired."""
        t = tables.oauth_requests
        async with self.db.read() as session:
            pending = (await session.execute(select(t).where(t.c.id_hash == hash_secret(request_id)))).first()
        if pending is None or pending.used_at is not None or as_utc(pending.expires_at) <= utcnow():
            return None
        return pending

    async def consume_sign_in(self, request_id: str) -> bool:
        """Mark the sign-in used; False when it already was (a second submission)."""
        t = tables.oauth_requests
        async with self.db.write() as session:
            result = await session.execute(
                update(t).where(t.c.id_hash == hash_secret(request_id), t.c.used_at.is_(None)).values(used_at=utcnow())
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def hold_for_confirmation(self, request_id: str, user_id: str) -> None:
        """Remember who signed in to a sign-in that waits for the person to confirm a client new to them."""
        t = tables.oauth_requests
        async with self.db.write() as session:
            await session.execute(
                update(t).where(t.c.id_hash == hash_secret(request_id), t.c.used_at.is_(None)).values(user_id=user_id)
            )

    async def issue_code(self, pending: Row[Any], user_id: str) -> str:
        """A one-time authorization code for the signed-in user, carrying the request's facts."""
        code = new_secret("pka")
        async with self.db.write() as session:
            await session.execute(
                insert(tables.oauth_codes).values(
                    code_hash=hash_secret(code),
                    client_id=pending.client_id,
                    redirect_uri=pending.redirect_uri,
                    user_id=user_id,
                    scope=pending.scope,
                    code_challenge=pending.code_challenge,
                    resource=pending.resource,
                    expires_at=utcnow() + CODE_TTL,
                )
            )
        return code

    async def revoke(self, client_id: str, token: str) -> None:
        """RFC 7009: revoke the pair an access or refresh token of this client belongs to."""
        digest = hash_secret(token)
        t = tables.oauth_tokens
        async with self.db.write() as session:
            await session.execute(
                update(t)
                .where(
                    t.c.client_id == client_id,
                    t.c.revoked_at.is_(None),
                    or_(t.c.access_hash == digest, t.c.refresh_hash == digest),
                )
                .values(revoked_at=utcnow())
            )


async def prune(session: AsyncSession) -> None:
    """Forget sign-ins and codes a day after they expired, and token pairs whose refresh token expired."""
    now = utcnow()
    await session.execute(delete(tables.oauth_requests).where(tables.oauth_requests.c.expires_at < now - PRUNE_AFTER))
    await session.execute(delete(tables.oauth_codes).where(tables.oauth_codes.c.expires_at < now - PRUNE_AFTER))
    await session.execute(delete(tables.oauth_tokens).where(tables.oauth_tokens.c.refresh_expires_at < now))


async def revoke_family(session: AsyncSession, family: str) -> None:
    """End every token pair descended from one code (a replayed code or refresh token may have been stolen)."""
    t = tables.oauth_tokens
    await session.execute(update(t).where(t.c.family == family, t.c.revoked_at.is_(None)).values(revoked_at=utcnow()))


async def issue_tokens(
    session: AsyncSession, client_id: str, user_id: str, scope: str, audience: str, family: str
) -> dict[str, Any]:
    """A new access/refresh pair bound to `audience`; the RFC 6749 section 5.1 response body."""
    access, refresh, now = new_secret("pkt"), new_secret("pkf"), utcnow()
    await session.execute(
        insert(tables.oauth_tokens).values(
            access_hash=hash_secret(access),
            refresh_hash=hash_secret(refresh),
            family=family,
            client_id=client_id,
            user_id=user_id,
            scope=scope,
            audience=audience,
            access_expires_at=now + ACCESS_TTL,
            refresh_expires_at=now + REFRESH_TTL,
        )
    )
    return {
        "access_token": access,
        "token_type": "bearer",
        "expires_in": int(ACCESS_TTL.total_seconds()),
        "refresh_token": refresh,
        "scope": scope,
    }
