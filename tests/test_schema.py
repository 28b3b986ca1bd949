"""Schema versions: a data directory of release 0.1.0 is migrated forward at start-up, a newer one is refused."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, inspect

from plugkit.plugins.sports.app import create_app as sports_app
from plugkit.plugins.sports.settings import SportsSettings
from plugkit.plugins.todo import store as todo_store
from plugkit.plugins.todo.app import create_app as todo_app
from plugkit.plugins.todo.settings import TodoSettings
from plugkit.schema import SchemaTooNewError, upgrade, versioned
from tests.helpers import asgi_client

RELEASE_0_1_0 = Path(__file__).parent / "data" / "datadir-0.1.0"
NEXT_TODO_SCRIPTS = Path(__file__).parent / "data" / "migrations" / "todo_next"


@pytest.fixture
def old_data_dir(tmp_path: Path) -> Path:
    """A copy of the data directory release 0.1.0 wrote (tests/data/make_datadir.py)."""
    return Path(shutil.copytree(RELEASE_0_1_0, tmp_path / "data"))


def versions(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'plugkit_schema_%'")]
        return {
            t.removeprefix("plugkit_schema_"): conn.execute(f"SELECT version_num FROM {t}").fetchone()[0]
            for t in tables
        }


async def test_a_release_0_1_0_todo_directory_is_versioned_at_start_up_and_keeps_its_todos_and_tokens(
    old_data_dir: Path,
) -> None:
    fixture = json.loads((old_data_dir / "fixture.json").read_text())
    assert versions(old_data_dir / "todo.db") == {}
    settings = TodoSettings(data_dir=old_data_dir, auth="user_http")
    async with asgi_client(todo_app(settings)) as client:
        listed = await client.get("/todos/alice", headers={"Authorization": f"Bearer {fixture['todo_token']}"})
    assert listed.status_code == 200 and listed.json()["todos"] == ["buy milk", "walk the dog"]
    assert versions(old_data_dir / "todo.db") == {
        "todo": "todo_0001",
        "auth": "auth_0002",
        "ratelimit": "ratelimit_0002",
    }


async def test_a_release_0_1_0_sports_dataset_is_versioned_and_still_served(old_data_dir: Path) -> None:
    async with asgi_client(sports_app(SportsSettings(data_dir=old_data_dir))) as client:
        games = await client.get("/games")
    assert games.status_code == 200 and games.json()["data"]
    assert versions(old_data_dir / "sports.db") == {"sports": "sports_0001"}
    assert versions(old_data_dir / "sports_auth.db") == {"ratelimit": "ratelimit_0002"}


async def test_a_new_data_directory_records_the_newest_revisions(tmp_path: Path) -> None:
    async with asgi_client(todo_app(TodoSettings(data_dir=tmp_path, auth="oauth"))) as client:
        assert (await client.get("/readyz")).status_code == 200
    assert versions(tmp_path / "todo.db") == {"todo": "todo_0001", "auth": "auth_0002", "ratelimit": "ratelimit_0002"}


def test_a_later_revision_migrates_a_release_0_1_0_database_forward_keeping_its_rows(old_data_dir: Path) -> None:
    later = MetaData()
    for table in todo_store.metadata.tables.values():
        table.to_metadata(later)
    versioned(later, "todo", str(NEXT_TODO_SCRIPTS))
    engine = create_engine(f"sqlite:///{old_data_dir / 'todo.db'}")
    with engine.begin() as conn:
        upgrade(conn, later)
    with engine.connect() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns("todos")}
        rows = conn.exec_driver_sql("SELECT text, done FROM todos ORDER BY id").fetchall()
    engine.dispose()
    assert "done" in columns and [tuple(r) for r in rows] == [("buy milk", 0), ("walk the dog", 0)]
    assert versions(old_data_dir / "todo.db")["todo"] == "todo_0002"


async def test_a_database_a_newer_plugkit_wrote_is_refused_naming_its_revision(old_data_dir: Path) -> None:
    async with asgi_client(todo_app(TodoSettings(data_dir=old_data_dir))):
        pass
    with sqlite3.connect(old_data_dir / "todo.db") as conn:
        conn.execute("UPDATE plugkit_schema_todo SET version_num = 'todo_0042'")
    with pytest.raises(SchemaTooNewError, match="schema revision todo_0042, which plugkit .* does not know"):
        async with asgi_client(todo_app(TodoSettings(data_dir=old_data_dir))):
            pass
    with sqlite3.connect(old_data_dir / "todo.db") as conn:  # nothing was changed by the refusal
        assert conn.execute("SELECT count(*) FROM todos").fetchone()[0] == 2


@pytest.mark.slow
async def test_postgresql_databases_record_their_versions_and_refuse_a_newer_one(postgres_url: str) -> None:
    settings = TodoSettings(database_url=postgres_url, auth="user_http")
    for _ in range(2):  # the second start finds everything current
        async with asgi_client(todo_app(settings)) as client:
            assert (await client.get("/readyz")).status_code == 200
    engine = create_engine(postgres_url, connect_args={"options": "-csearch_path=todo"})  # the plugin's own schema
    try:
        with engine.begin() as conn:
            recorded = {
                group: conn.exec_driver_sql(f"SELECT version_num FROM plugkit_schema_{group}").scalar_one()
                for group in ("todo", "auth", "ratelimit")
            }
            conn.exec_driver_sql("UPDATE plugkit_schema_todo SET version_num = 'todo_0042'")
        try:
            with pytest.raises(SchemaTooNewError, match="todo_0042"):
                async with asgi_client(todo_app(settings)):
                    pass
        finally:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"UPDATE plugkit_schema_todo SET version_num = '{recorded['todo']}'")
    finally:
        engine.dispose()
    assert recorded == {"todo": "todo_0001", "auth": "auth_0002", "ratelimit": "ratelimit_0002"}
