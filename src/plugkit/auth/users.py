"""Users who sign in on the OAuth page: passwords hashed with Argon2id (memory-hard)."""

from __future__ import annotations

import asyncio
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from plugkit.auth import tables
from plugkit.auth.bearer import USERNAME
from plugkit.auth.credentials import utcnow
from plugkit.storage import Database

MIN_PASSWORD_CHARS = 8
_hasher = PasswordHasher()  # Argon2id with the library's RFC 9106 defaults


@cache
def _dummy_hash() -> str:
    """What an unknown user's password is checked against; made on first use, not at import (it costs a hash)."""
    return _hasher.hash("a password nobody has")


class UserStore:
    """Create users, set and check their passwords."""

    def __init__(self, database: Database) -> None:
        self.db = database

    async def set_password(self, username: str, password: str) -> bool:
        """Create the user or change their password; True when the user is new."""
        if not USERNAME.match(username):
            raise ValueError("a user name has 1-200 letters, digits or _.@-")
        if len(password) < MIN_PASSWORD_CHARS:
            raise ValueError(f"the password is shorter than {MIN_PASSWORD_CHARS} characters")
        password_hash = await asyncio.to_thread(_hasher.hash, password)
        t = tables.users
        async with self.db.write() as session:
            exists = (await session.execute(select(t.c.username).where(t.c.username == username))).first()
            dialect = postgresql if not self.db.is_sqlite else sqlite
            await session.execute(
                dialect.insert(t)
                .values(username=username, password_hash=password_hash, created_at=utcnow())
                .on_conflict_do_update(index_elements=[t.c.username], set_={"password_hash": password_hash})
            )
            return exists is None

    async def verify(self, username: str, password: str) -> bool:
        """Whether the password is the user's; an unknown user costs the same time as a wrong password."""
        async with self.db.read() as session:
            stored = (
                await session.execute(select(tables.users.c.password_hash).where(tables.users.c.username == username))
            ).scalar_one_or_none()
        try:
            ok = await asyncio.to_thread(_hasher.verify, stored or _dummy_hash(), password)
        except (VerificationError, InvalidHashError):
            return False
        return bool(ok) and stored is not None

    async def list(self) -> list[str]:
        async with self.db.read() as session:
            rows = await session.execute(select(tables.users.c.username).order_by(tables.users.c.username))
            return [r[0] for r in rows]
