"""A database made by an earlier plugkit (before MCP authorization) is brought up to date, and its clients keep
working: on a SQLite file and on a real PostgreSQL server."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, create_engine, insert, make_url, text

from plugkit.auth.credentials import hash_secret, utcnow
from plugkit.plugins.todo.app import create_app
from plugkit.plugins.todo.settings import TodoSettings
from tests.auth.oauth_flow import HOST_CALLBACK, PASSWORD, code_grant, sign_in
from tests.helpers import asgi_client


def earlier_schema() -> tuple[MetaData, Table]:
    """The auth tables as release 0.1.0 made them, all at once (no kinds, resources or audiences; short client ids;
    failures counted in their own table)."""
    old = MetaData()
    Table(
        "auth_users",
        old,
        Column("username", String(200), primary_key=True),
        Column("password_hash", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )
    Table(
        "auth_user_tokens",
        old,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("user_id", String(200), nullable=False, index=True),
        Column("token_hash", String(64), nullable=False, unique=True),
        Column("label", String(200), nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("revoked_at", DateTime(timezone=True), nullable=True),
    )
    Table(
        "auth_failures",
        old,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("key", String(300), nullable=False),
        Column("at", DateTime(timezone=True), nullable=False),
    )
    clients = Table(
        "auth_oauth_clients",
        old,
        Column("client_id", String(100), primary_key=True),
        Column("secret_hash", String(64), nullable=False),
        Column("redirect_uris", Text, nullable=False),
        Column("name", String(200), nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )
    for name in ("auth_oauth_requests", "auth_oauth_codes"):
        Table(
            name,
            old,
            Column("id_hash" if name.endswith("requests") else "code_hash", String(64), primary_key=True),
            Column("client_id", String(100), nullable=False),
            Column("redirect_uri", Text, nullable=False),
            *([Column("user_id", String(200), nullable=False)] if name.endswith("codes") else []),
            Column("scope", Text, nullable=False),
            *([Column("state", Text, nullable=False)] if name.endswith("requests") else []),
            Column("code_challenge", String(128), nullable=True),
            Column("expires_at", DateTime(timezone=True), nullable=False),
            Column("used_at", DateTime(timezone=True), nullable=True),
        )
    Table(
        "auth_oauth_tokens",
        old,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("access_hash", String(64), nullable=False, unique=True),
        Column("refresh_hash", String(64), nullable=True, unique=True),
        Column("family", String(64), nullable=False),
        Column("client_id", String(100), nullable=False),
        Column("user_id", String(200), nullable=False),
        Column("scope", Text, nullable=False),
        Column("access_expires_at", DateTime(timezone=True), nullable=False),
        Column("refresh_expires_at", DateTime(timezone=True), nullable=False),
        Column("revoked_at", DateTime(timezone=True), nullable=True),
    )
    return old, clients


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    server_url: str = request.getfixturevalue("postgres_url")
    name = f"old_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def test_an_earlier_database_is_upgraded_and_its_operator_client_still_signs_in(
    tmp_path: Path, database_url: str
) -> None:
    old, clients = earlier_schema()
    postgresql = database_url.startswith("postgresql")
    # On PostgreSQL the todo plugin keeps its tables in its own schema, `todo`.
    options = {"connect_args": {"options": "-csearch_path=todo"}} if postgresql else {}
    engine = create_engine(database_url.replace("+aiosqlite", ""), **options)
    if postgresql:
        with engine.begin() as conn:
            conn.execute(text("CREATE SCHEMA todo"))
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(clients).values(
                client_id="pkc_old",
                secret_hash=hash_secret("pks_old_secret"),
                redirect_uris=json.dumps([HOST_CALLBACK]),
                name="ChatGPT",
                created_at=utcnow(),
            )
        )
        conn.execute(
            insert(old.tables["auth_oauth_tokens"]).values(
                access_hash=hash_secret("pkt_old"),
                refresh_hash=hash_secret("pkf_old"),
                family="f",
                client_id="pkc_old",
                user_id="alice",
                scope="plugin",
                access_expires_at=utcnow() + timedelta(hours=1),
                refresh_expires_at=utcnow() + timedelta(days=1),
            )
        )
    engine.dispose()
    app = create_app(TodoSettings(auth="oauth", data_dir=tmp_path, database_url=database_url))
    async with asgi_client(app) as http:
        await app.state.auth.users.set_password("alice", PASSWORD)
        query = await sign_in(http, "pkc_old")
        answer = await code_grant(http, "pkc_old", "pks_old_secret", query["code"])
        assert answer.status_code == 200, answer.text
        listed = await http.get("/todos/alice", headers={"Authorization": f"Bearer {answer.json()['access_token']}"})
        assert listed.status_code == 200
        long_id = "https://app.example/" + "c" * 300 + "/client.json"  # a metadata-document id fits now
        fields = {"redirect_uri": "https://app.example/cb", "scope": "plugin", "state": "s", "code_challenge": None}
        assert await app.state.auth.server.tokens.start_sign_in(client_id=long_id, resource=None, **fields)
        assert (await http.get("/todos/alice", headers={"Authorization": "Bearer pkt_old"})).status_code == 401
        refresh = {"grant_type": "refresh_token", "refresh_token": "pkf_old"}
        refreshed = await http.post("/oauth/token", data=refresh, auth=("pkc_old", "pks_old_secret"))
        assert refreshed.status_code == 200, refreshed.text
        bound = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
        assert (await http.get("/todos/alice", headers=bound)).status_code == 200
        registered = await http.post("/oauth/register", json={"redirect_uris": [HOST_CALLBACK]})
        assert registered.status_code == 201, registered.text
