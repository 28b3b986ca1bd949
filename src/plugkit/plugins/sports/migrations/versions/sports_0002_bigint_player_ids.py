"""Player and box-score ids as 64-bit integers on PostgreSQL.

The importer derives players' and box scores' ids from their names and games: 48-bit numbers, which PostgreSQL's
INTEGER columns of sports_0001 refused ("integer out of range"), so the bundled dataset could not be imported there.
SQLite's INTEGER already holds 64 bits: nothing changes there.

Revision ID: sports_0002
Revises: sports_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "sports_0002"
down_revision: str | None = "sports_0001"
branch_labels: str | None = None
depends_on: str | None = None

WIDENED = (("stats", "player_id"), ("stats", "id"), ("players", "id"))


def upgrade() -> None:
    """Widen the id columns to BIGINT on PostgreSQL (the foreign key's column first)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in WIDENED:
        op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer(), existing_nullable=False)


def downgrade() -> None:
    """Back to INTEGER on PostgreSQL (fails if a 48-bit id is stored, as it must)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in reversed(WIDENED):
        op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger(), existing_nullable=False)
