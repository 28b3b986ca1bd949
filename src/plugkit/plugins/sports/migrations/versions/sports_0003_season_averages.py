"""Season averages kept in a table, derived from the stat lines when they are imported.

/season_averages summed a season of box scores per question; the importer now writes each player's averages beside
the stat lines (plugkit.plugins.sports.averages), and this revision creates the table and fills it from the stat
lines a database already holds.

Revision ID: sports_0003
Revises: sports_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from plugkit.plugins.sports import averages, tables

revision = "sports_0003"
down_revision: str | None = "sports_0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create season_averages and compute it from the stored stat lines."""
    op.create_table(
        "season_averages",
        sa.Column("season", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("postseason", sa.Boolean, primary_key=True),
        sa.Column("player_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("games_played", sa.Integer, nullable=False),
        sa.Column("min", sa.String(10)),
        *(sa.Column(name, sa.Float) for name in tables.STAT_FIELDS),
    )
    averages.refresh(op.get_bind())


def downgrade() -> None:
    """Drop the derived table (the stat lines it came from stay)."""
    op.drop_table("season_averages")
