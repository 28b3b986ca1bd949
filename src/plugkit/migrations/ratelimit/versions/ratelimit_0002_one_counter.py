"""One windowed counter for every limit: `plugkit_counts` replaces `plugkit_request_counts`.

The counts are of the current minute or hour only, so the old table is dropped rather than copied.

Revision ID: ratelimit_0002
Revises: ratelimit_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ratelimit_0002"
down_revision: str | None = "ratelimit_0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the counter table and drop the request counts of release 0.1.0."""
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "plugkit_counts" not in existing:
        op.create_table(
            "plugkit_counts",
            sa.Column("key", sa.String(300), primary_key=True),
            sa.Column("window", sa.BigInteger, primary_key=True),
            sa.Column("ends", sa.BigInteger, nullable=False, index=True),
            sa.Column("count", sa.Integer, nullable=False),
        )
    if "plugkit_request_counts" in existing:
        op.drop_table("plugkit_request_counts")


def downgrade() -> None:
    """Not supported: counts are transient; a downgrade starts them afresh."""
    raise NotImplementedError("ratelimit_0002 cannot be downgraded")
