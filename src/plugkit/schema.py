"""Schema versions and migrations of plugkit's SQLAlchemy databases, with Alembic.

A group of tables that evolves together (the todo list, the auth tables, the rate counts, the sports dataset) is a
`MetaData` marked with `versioned(metadata, name, script_location)`: `script_location` is an Alembic script
directory ("package:path") whose revisions migrate the group, and its version is kept in its own version table,
`plugkit_schema_<name>`, so several groups share one database. `upgrade(conn, metadata)` (which
`Database.create_all` calls for a versioned group) then:

- creates the tables of an empty database and records the newest revision;
- records the first revision (the schema of release 0.1.0) for tables written before versions were recorded, then
  migrates them forward, as it does any older database;
- refuses, with `SchemaTooNewError`, a database whose revision this plugkit does not know: a newer plugkit wrote it.

Release 0.1.0 kept every group's PostgreSQL tables in `public`; now each plugin has a schema of its own.
`adopt_public(conn, metadata, schema)` (which `Database.create_all` runs first) brings a group's 0.1.0 tables into the
plugin's schema when that schema has none yet: moved when they belonged to one plugin, copied (rows included) when
0.1.0 shared them between plugins (`versioned(..., shared_in_0_1_0=True)`, the auth tables).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, inspect

from plugkit import __version__

INFO_KEY = "plugkit_schema"
PUBLIC_KEY = "plugkit_schema_public"
ADOPT_LOCK = 0x706B5F736368656D  # the advisory lock key of adopt_public ("pk_schem")
log = logging.getLogger(__name__)


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer plugkit: its schema revision is not one this plugkit knows."""


def versioned(
    metadata: MetaData,
    name: str,
    script_location: str,
    *,
    shared_in_0_1_0: bool = False,
    earlier_tables: Sequence[str] = (),
) -> MetaData:
    """Mark `metadata` as the versioned group `name`, migrated by the Alembic scripts at `script_location`.

    `shared_in_0_1_0`: release 0.1.0 kept one set of these tables in PostgreSQL's `public` for all plugins, so each
    plugin's schema gets a copy of them (otherwise they belonged to one plugin and move to its schema).
    `earlier_tables`: tables of earlier revisions the metadata no longer has, brought along with the others."""
    metadata.info[INFO_KEY] = (name, script_location)
    metadata.info[PUBLIC_KEY] = (shared_in_0_1_0, tuple(earlier_tables))
    return metadata


def version_table(name: str) -> str:
    return f"plugkit_schema_{name}"


def scripts(metadata: MetaData) -> tuple[str, ScriptDirectory, Config]:
    name, location = metadata.info[INFO_KEY]
    config = Config()
    config.set_main_option("script_location", location)
    return name, ScriptDirectory.from_config(config), config


def current_revision(conn: Connection, metadata: MetaData) -> str | None:
    """The revision the database records for the group (None: none recorded)."""
    name, _, _ = scripts(metadata)
    context = MigrationContext.configure(conn, opts={"version_table": version_table(name)})
    heads = context.get_current_heads()
    return heads[0] if heads else None


def upgrade(conn: Connection, metadata: MetaData) -> None:
    """Create, or migrate to the newest revision, the group's tables on `conn` (in the caller's transaction)."""
    name, script, config = scripts(metadata)
    table = version_table(name)
    context = MigrationContext.configure(conn, opts={"version_table": table})
    current = context.get_current_heads()
    head = script.get_current_head()
    known = {revision.revision for revision in script.walk_revisions()}
    unknown = [rev for rev in current if rev not in known]
    if unknown:
        raise SchemaTooNewError(
            f"the {name} tables of {_where(conn)} are at schema revision {unknown[0]}, which plugkit {__version__} "
            f"does not know (its newest is {head}): a newer plugkit wrote them. Run that version, or restore a backup "
            "this version made"
        )
    if not current:
        existing = set(inspect(conn).get_table_names())
        if not existing & set(metadata.tables):
            metadata.create_all(conn)
            context.stamp(script, "head")
            return
        base = script.get_base()
        assert base is not None
        context.stamp(script, base)  # tables written before versions were recorded: the schema of release 0.1.0
    if context.get_current_heads() == (head,):
        return

    def steps(revision: Any, _context: Any) -> Any:
        return script._upgrade_revs("head", revision)

    with EnvironmentContext(config, script, fn=steps, destination_rev="head") as environment:
        environment.configure(connection=conn, target_metadata=metadata, version_table=table, fn=steps)
        environment.run_migrations()


def adopt_public(conn: Connection, metadata: MetaData, schema: str) -> None:
    """On PostgreSQL, bring the group's tables that release 0.1.0 wrote in `public` into `schema` when `schema` has
    none of them yet (in the caller's transaction, under an advisory lock so that workers starting at once do it
    once): moved (ALTER TABLE ... SET SCHEMA) when they belonged to one plugin, copied with their rows, indexes,
    constraints and own sequences when 0.1.0 shared them. The group's version table, if `public` has one, comes
    along, so that `upgrade` then migrates the tables from the revision they are at."""
    if conn.dialect.name != "postgresql" or schema == "public" or INFO_KEY not in metadata.info:
        return
    name, _ = metadata.info[INFO_KEY]
    shared, earlier = metadata.info.get(PUBLIC_KEY, (False, ()))
    group = {*metadata.tables, *earlier, version_table(name)}
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({ADOPT_LOCK})")
    inspector = inspect(conn)
    if group & set(inspector.get_table_names(schema=schema)):
        return  # the schema has the group already: never touched
    found = sorted(group & set(inspector.get_table_names(schema="public")))
    if not set(found) - {version_table(name)}:
        return
    counts: dict[str, int] = {}
    for table in found:
        counts[table] = conn.exec_driver_sql(f'SELECT count(*) FROM public."{table}"').scalar_one()
        if shared:
            _copy_table(conn, table, schema)
        else:
            conn.exec_driver_sql(f'ALTER TABLE public."{table}" SET SCHEMA "{schema}"')
    log.warning(
        "%s the %s tables of release 0.1.0 from schema public into schema %s: %s",
        "copied" if shared else "moved",
        name,
        schema,
        ", ".join(f"{table} ({rows} rows)" for table, rows in counts.items()),
    )


def _copy_table(conn: Connection, table: str, schema: str) -> None:
    """Copy public.`table` into `schema`: columns, defaults, constraints and indexes under the same names, the rows,
    and sequences of its own for serial columns (LIKE would leave them drawing from public's)."""
    target = f'"{schema}"."{table}"'
    conn.exec_driver_sql(f'CREATE TABLE {target} (LIKE public."{table}" INCLUDING ALL)')
    conn.exec_driver_sql(f'INSERT INTO {target} OVERRIDING SYSTEM VALUE SELECT * FROM public."{table}"')
    index_sql = (
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = %s::regclass"
    )
    copies = {_index_shape(definition): index for index, definition in conn.exec_driver_sql(index_sql, (target,)).all()}
    for index, definition in conn.exec_driver_sql(index_sql, (f'public."{table}"',)).all():
        copy = copies.get(_index_shape(definition))
        if copy is not None and copy != index:  # LIKE names indexes itself; migrations may name the originals
            conn.exec_driver_sql(f'ALTER INDEX "{schema}"."{copy}" RENAME TO "{index}"')
    columns = conn.exec_driver_sql(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s AND (column_default LIKE 'nextval(%%' OR is_identity = 'YES')",
        (schema, table),
    ).all()
    for (column,) in columns:
        sequence = conn.exec_driver_sql("SELECT pg_get_serial_sequence(%s, %s)", (target, column)).scalar_one()
        if sequence is None:  # a serial column: its default still draws from public's sequence
            sequence = f'"{schema}"."{table}_{column}_seq"'
            conn.exec_driver_sql(f'CREATE SEQUENCE {sequence} OWNED BY {target}."{column}"')
            conn.exec_driver_sql(f"ALTER TABLE {target} ALTER COLUMN \"{column}\" SET DEFAULT nextval('{sequence}')")
        conn.exec_driver_sql(
            f'SELECT setval(%s, coalesce((SELECT max("{column}") FROM {target}), 0) + 1, false)', (sequence,)
        )


def _index_shape(definition: str) -> tuple[str, str]:
    """An index definition without its name and table: "CREATE UNIQUE INDEX", "btree (token_hash)"."""
    head, tail = definition.split(" ON ", 1)
    return head.rsplit(" ", 1)[0], tail.split(" USING ", 1)[1]


def _where(conn: Connection) -> str:
    url = conn.engine.url
    return url.database or "the database" if url.get_backend_name() == "sqlite" else url.render_as_string()
