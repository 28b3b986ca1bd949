"""Schema versions: a data directory of release 0.1.0 is migrated forward at start-up, a newer one is refused."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sqlite3
import uuid
from pathlib import Path

import pytest
from sqlalchemy import BigInteger, Integer, MetaData, create_engine, insert, inspect, make_url

from plugkit.auth import tables as auth_tables
from plugkit.auth.credentials import hash_secret, utcnow
from plugkit.plugins.sports import tables as sports_tables
from plugkit.plugins.sports.app import create_app as sports_app
from plugkit.plugins.sports.settings import SportsSettings
from plugkit.plugins.todo import store as todo_store
from plugkit.plugins.todo.app import create_app as todo_app
from plugkit.plugins.todo.settings import TodoSettings
from plugkit.schema import SchemaTooNewError, upgrade, versioned
from plugkit.storage import Database
from tests.auth.oauth_flow import HOST_CALLBACK, PASSWORD, code_grant, sign_in
from tests.auth.test_tables import earlier_schema
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
    with sqlite3.connect(old_data_dir / "sports.db") as conn:  # the player with the most box scores, and how many
        player, played = conn.execute(
            "SELECT player_id, count(*) FROM stats JOIN games ON games.id = stats.game_id "
            "WHERE season = 2023 AND NOT postseason GROUP BY player_id ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
    async with asgi_client(sports_app(SportsSettings(data_dir=old_data_dir))) as client:
        games = await client.get("/games")
        averages = await client.get(f"/season_averages?season=2023&player_ids[]={player}")
    assert games.status_code == 200 and games.json()["data"]
    # the averages table sports_0003 added was filled from the box scores the dataset held
    assert [(a["player_id"], a["games_played"]) for a in averages.json()["data"]] == [(player, played)]
    assert versions(old_data_dir / "sports.db") == {"sports": "sports_0003"}
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


def release_0_1_0_public_layout(url: str) -> str:
    """A new database on the server at `url` laid out as release 0.1.0 left it: every table in `public` (one set of
    auth tables for all plugins, no version tables), holding alice with a user token, an operator OAuth client and
    two todos. Returns its URL."""
    name = f"old_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    database_url = make_url(url).set(database=name).render_as_string(hide_password=False)
    old, clients = earlier_schema()
    todo_store.todos.to_metadata(old)  # the todo table has not changed since 0.1.0
    engine = create_engine(database_url)
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(old.tables["auth_users"]).values(username="alice", password_hash="x", created_at=utcnow()))
        conn.execute(
            insert(old.tables["auth_user_tokens"]).values(
                user_id="alice", token_hash=hash_secret(ALICE_TOKEN), label="laptop", created_at=utcnow()
            )
        )
        conn.execute(
            insert(clients).values(
                client_id="pkc_old",
                secret_hash=hash_secret("pks_old_secret"),
                redirect_uris=json.dumps([HOST_CALLBACK]),
                name="ChatGPT",
                created_at=utcnow(),
            )
        )
        for text in ("buy milk", "walk the dog"):
            conn.execute(insert(old.tables["todos"]).values(username="alice", text=text, created_at=utcnow()))
    engine.dispose()
    return database_url


ALICE_TOKEN = "pkt_" + "a" * 43


def tables_by_schema(url: str) -> dict[str, set[str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            ).all()
    finally:
        engine.dispose()
    found: dict[str, set[str]] = {}
    for schema_name, table in rows:
        found.setdefault(schema_name, set()).add(table)
    return found


@pytest.mark.slow
async def test_a_release_0_1_0_public_layout_moves_todos_and_copies_the_shared_auth_tables_into_each_plugin(
    postgres_url: str, old_data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = release_0_1_0_public_layout(postgres_url)
    alice = {"Authorization": f"Bearer {ALICE_TOKEN}"}
    todo = todo_app(TodoSettings(database_url=url, auth="user_http", data_dir=old_data_dir))
    with caplog.at_level(logging.INFO, logger="plugkit.schema"):
        async with asgi_client(todo) as client:
            listed = await client.get("/todos/alice", headers=alice)
            added = await client.post("/todos/alice", json={"todo": "water the plants"}, headers=alice)
    assert listed.status_code == 200 and listed.json()["todos"] == ["buy milk", "walk the dog"]
    assert added.status_code == 200, added.text
    sports = sports_app(SportsSettings(database_url=url, auth="user_http", data_dir=old_data_dir))
    async with asgi_client(sports) as client:
        games = await client.get("/games", headers=alice)
        refused = await client.get("/games", headers={"Authorization": "Bearer pkt_" + "b" * 43})
    assert games.status_code == 200 and games.json()["data"]
    assert refused.status_code == 401
    found = tables_by_schema(url)
    auth_tables = {"auth_users", "auth_user_tokens", "auth_oauth_clients", "auth_oauth_tokens", "auth_oauth_approvals"}
    assert "todos" not in found["public"] and "todos" in found["todo"]  # moved: the todo plugin's own
    assert auth_tables <= found["todo"] and auth_tables <= found["sports_auth"]  # copied, then migrated to auth_0002
    assert "auth_failures" in found["public"] and "auth_failures" not in found["todo"]  # 0.1.0's own left as it was
    messages = [r.getMessage() for r in caplog.records if r.name == "plugkit.schema"]
    assert any("moved the todo tables" in m and "todos (2 rows)" in m for m in messages), messages
    assert any("copied the auth tables" in m and "auth_user_tokens (1 rows)" in m for m in messages), messages
    assert not any(ALICE_TOKEN in m or "pks_old_secret" in m for m in messages)

    # A second start, and a new token in one plugin, leave the other's copy alone: the schemas are their own now.
    signing_in = todo_app(TodoSettings(database_url=url, auth="oauth", data_dir=old_data_dir))
    async with asgi_client(signing_in) as http:
        await signing_in.state.auth.users.set_password("alice", PASSWORD)
        query = await sign_in(http, "pkc_old")
        answer = await code_grant(http, "pkc_old", "pks_old_secret", query["code"])
        assert answer.status_code == 200, answer.text
        bearer = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        assert (await http.get("/todos/alice", headers=bearer)).json()["todos"][-1] == "water the plants"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            counts = {
                schema_name: conn.exec_driver_sql(f"SELECT count(*) FROM {schema_name}.auth_oauth_tokens").scalar()
                for schema_name in ("todo", "sports_auth", "public")
            }
    finally:
        engine.dispose()
    assert counts == {"todo": 1, "sports_auth": 0, "public": 0}


def scalars(url: str, *queries: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [conn.exec_driver_sql(query).scalar() for query in queries]
    finally:
        engine.dispose()


@pytest.mark.slow
async def test_workers_starting_at_once_on_a_release_0_1_0_layout_bring_its_tables_over_once(postgres_url: str) -> None:
    url = release_0_1_0_public_layout(postgres_url)
    # Three todo workers (the todo tables and the auth tables) and two retrieval workers (the auth tables only).
    groups = {"todo": (auth_tables.metadata, todo_store.metadata), "retrieval_auth": (auth_tables.metadata,)}
    workers = [(Database(url, schema=name), groups[name]) for name in ["todo"] * 3 + ["retrieval_auth"] * 2]
    databases = [db for db, _ in workers]
    try:
        await asyncio.gather(*(db.create_all(*metadata) for db, metadata in workers))
    finally:
        for db in databases:
            await db.dispose()
    counts = scalars(
        url,
        "SELECT count(*) FROM todo.todos",
        "SELECT count(*) FROM todo.auth_user_tokens",
        "SELECT count(*) FROM retrieval_auth.auth_user_tokens",
        "SELECT count(*) FROM public.auth_user_tokens",
        "SELECT version_num FROM retrieval_auth.plugkit_schema_auth",
        # each copy draws ids from a sequence of its own, past the copied rows
        "SELECT pg_get_serial_sequence('retrieval_auth.auth_user_tokens', 'id')",
        "INSERT INTO retrieval_auth.auth_user_tokens (user_id, token_hash, created_at) "
        "VALUES ('bob', 'h', now()) RETURNING id",
    )
    assert counts == [2, 1, 1, 1, "auth_0002", "retrieval_auth.auth_user_tokens_id_seq", 2]
    index_names = (
        "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes "
        "WHERE schemaname = '{}' AND tablename = 'auth_user_tokens'"
    )
    copied, original = scalars(url, index_names.format("retrieval_auth"), index_names.format("public"))
    assert copied == original and "ix_auth_user_tokens_user_id" in str(copied)  # the names migrations may use


@pytest.mark.slow
async def test_a_plugin_schema_that_has_its_tables_is_never_touched_by_the_upgrade_path(postgres_url: str) -> None:
    url = release_0_1_0_public_layout(postgres_url)
    engine = create_engine(url, connect_args={"options": "-csearch_path=todo"})
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA todo")
        todo_store.todos.create(conn)  # the schema has the todo group already, empty
    engine.dispose()
    database = Database(url, schema="todo")
    try:
        await database.create_all(todo_store.metadata)
    finally:
        await database.dispose()
    assert scalars(url, "SELECT count(*) FROM public.todos", "SELECT count(*) FROM todo.todos") == [2, 0]


@pytest.mark.slow
async def test_a_public_auth_version_table_is_copied_along_so_the_copy_migrates_from_its_revision(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = release_0_1_0_public_layout(postgres_url)
    engine = create_engine(url)
    with engine.begin() as conn:  # versions recorded in public, as a plugkit between 0.1.0 and schemas did
        conn.exec_driver_sql("CREATE TABLE plugkit_schema_auth (version_num varchar(32) PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO plugkit_schema_auth VALUES ('auth_0001')")
    engine.dispose()
    database = Database(url, schema="sports_auth")
    try:
        with caplog.at_level(logging.INFO, logger="plugkit.schema"):
            await database.create_all(auth_tables.metadata)
    finally:
        await database.dispose()
    assert "plugkit_schema_auth (1 rows)" in caplog.text
    assert scalars(
        url,
        "SELECT version_num FROM sports_auth.plugkit_schema_auth",
        "SELECT version_num FROM public.plugkit_schema_auth",
        "SELECT kind FROM sports_auth.auth_oauth_clients WHERE client_id = 'pkc_old'",
    ) == ["auth_0002", "auth_0001", "operator"]


async def test_a_postgresql_sports_schema_of_release_0_1_0_gets_64_bit_player_ids(postgres_url: str) -> None:
    schema = f"sports_{uuid.uuid4().hex[:8]}"
    old = MetaData()
    for table in sports_tables.metadata.tables.values():
        if table is sports_tables.season_averages:
            continue  # sports_0003 added it
        copy = table.to_metadata(old)
        for column in copy.columns:
            if isinstance(column.type, BigInteger):
                column.type = Integer()  # as sports_0001 made them
    engine = create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
            conn.exec_driver_sql(f"SET search_path TO {schema}")
            old.create_all(conn)
        database = Database(postgres_url, schema=schema)
        await database.create_all(sports_tables.metadata)  # stamps sports_0001, then migrates
        await database.run_write(
            lambda conn: conn.execute(
                insert(sports_tables.players).values(
                    id=281223717245337, first_name="A", last_name="B", search_name="a b"
                )
            )
        )
        await database.dispose()
        with engine.connect() as conn:
            conn.exec_driver_sql(f"SET search_path TO {schema}")
            types = {
                (t, c["name"]): str(c["type"])
                for t in ("players", "stats")
                for c in inspect(conn).get_columns(t, schema=schema)
                if c["name"] in ("id", "player_id")
            }
            version = conn.exec_driver_sql("SELECT version_num FROM plugkit_schema_sports").scalar_one()
    finally:
        engine.dispose()
    assert set(types.values()) == {"BIGINT"} and len(types) == 3
    assert version == "sports_0003"
