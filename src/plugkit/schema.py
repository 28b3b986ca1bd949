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
"""

from __future__ import annotations

from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, inspect

from plugkit import __version__

INFO_KEY = "plugkit_schema"


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer plugkit: its schema revision is not one this plugkit knows."""


def versioned(metadata: MetaData, name: str, script_location: str) -> MetaData:
    """Mark `metadata` as the versioned group `name`, migrated by the Alembic scripts at `script_location`."""
    metadata.info[INFO_KEY] = (name, script_location)
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


def _where(conn: Connection) -> str:
    url = conn.engine.url
    return url.database or "the database" if url.get_backend_name() == "sqlite" else url.render_as_string()
