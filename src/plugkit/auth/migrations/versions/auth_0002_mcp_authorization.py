"""MCP authorization: registered and public OAuth clients, approvals, resource-bound tokens, one failure counter.

- `auth_oauth_clients` gains kind, auth_method, grant_types, scope, registered_from and used_at (operator clients of
  release 0.1.0 keep working: the defaults describe them);
- sign-ins, codes and tokens name their resource (RFC 8707) and accept client ids that are URLs (client ID metadata
  documents), so their client_id columns widen on PostgreSQL (SQLite does not enforce lengths);
- `auth_oauth_approvals` records which user allowed which client;
- `auth_failures` goes: failures are counted in the rate counter's table (plugkit.ratelimit).

Access tokens issued before this revision carry no audience: they are refused, and refreshing one gives a bound one.

Revision ID: auth_0002
Revises: auth_0001
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "auth_0002"
down_revision: str | None = "auth_0001"
branch_labels: str | None = None
depends_on: str | None = None

ADDED: dict[str, list[sa.Column[Any]]] = {
    "auth_oauth_clients": [
        sa.Column("kind", sa.String(20), nullable=False, server_default="operator"),
        sa.Column("auth_method", sa.String(40), nullable=False, server_default="client_secret_post"),
        sa.Column("grant_types", sa.Text, nullable=False, server_default='["authorization_code", "refresh_token"]'),
        sa.Column("scope", sa.Text, nullable=True),
        sa.Column("registered_from", sa.String(100), nullable=True),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    ],
    "auth_oauth_requests": [
        sa.Column("user_id", sa.String(200), nullable=True),
        sa.Column("resource", sa.Text, nullable=True),
    ],
    "auth_oauth_codes": [sa.Column("resource", sa.Text, nullable=True)],
    "auth_oauth_tokens": [sa.Column("audience", sa.Text, nullable=True)],  # none: issued before audiences, refused
}
WIDENED = ("auth_oauth_requests", "auth_oauth_codes", "auth_oauth_tokens")


def upgrade() -> None:
    """Add the columns and the approvals table; widen client ids on PostgreSQL; drop the failures table."""
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    existing = set(inspector.get_table_names())
    for table, columns in ADDED.items():
        if table not in existing:
            continue
        present = {c["name"] for c in inspector.get_columns(table)}
        for column in columns:
            if column.name not in present:
                op.add_column(table, column)
    if bind.dialect.name == "postgresql":
        for table in WIDENED:
            if table in existing:
                op.alter_column(table, "client_id", type_=sa.String(2100), existing_nullable=False)
    if "auth_oauth_approvals" not in existing:
        op.create_table(
            "auth_oauth_approvals",
            sa.Column("client_id", sa.String(2100), primary_key=True),
            sa.Column("user_id", sa.String(200), primary_key=True),
            sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        )
    if "auth_failures" in existing:
        op.drop_table("auth_failures")


def downgrade() -> None:
    """Not supported: restore a backup made before the upgrade."""
    raise NotImplementedError("auth_0002 cannot be downgraded")
