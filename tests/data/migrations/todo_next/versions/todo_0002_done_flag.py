"""A later todo revision, for the tests: a `done` flag on every todo.

Revision ID: todo_0002
Revises: todo_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "todo_0002"
down_revision: str | None = "todo_0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("todos") as batch:
        batch.add_column(sa.Column("done", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("todos") as batch:
        batch.drop_column("done")
