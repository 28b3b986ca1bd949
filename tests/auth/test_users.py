"""Users and their passwords (Argon2id)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plugkit.auth import tables
from plugkit.auth.users import UserStore
from plugkit.storage import Database


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[UserStore]:
    database = Database(f"sqlite:///{tmp_path / 'users.db'}")
    await database.create_all(tables.metadata)
    yield UserStore(database)
    await database.dispose()


async def test_a_password_is_stored_as_an_argon2id_hash_and_verifies(store: UserStore) -> None:
    assert await store.set_password("alice", "correct horse battery") is True
    async with store.db.read() as session:
        stored = (await session.execute(tables.users.select())).one()
    assert stored.password_hash.startswith("$argon2id$") and "correct horse" not in stored.password_hash
    assert await store.verify("alice", "correct horse battery")
    assert not await store.verify("alice", "correct horse battery!")


async def test_setting_a_password_again_replaces_the_old_one(store: UserStore) -> None:
    await store.set_password("alice", "first password")
    assert await store.set_password("alice", "second password") is False
    assert not await store.verify("alice", "first password")
    assert await store.verify("alice", "second password")
    assert await store.list() == ["alice"]


async def test_an_unknown_user_does_not_verify(store: UserStore) -> None:
    assert not await store.verify("nobody", "any password")


@pytest.mark.parametrize(
    ("name", "password"), [("alice", "short"), ("bad name", "long enough pw"), ("", "long enough")]
)
async def test_a_short_password_or_an_invalid_name_is_refused(store: UserStore, name: str, password: str) -> None:
    with pytest.raises(ValueError):
        await store.set_password(name, password)
