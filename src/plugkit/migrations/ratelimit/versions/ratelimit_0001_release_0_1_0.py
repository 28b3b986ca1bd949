"""The ratelimit tables as release 0.1.0 made them.

An empty database gets them from the metadata (create_all) at the newest revision; tables written before schema
versions were recorded are stamped at this revision, then migrated forward.

Revision ID: ratelimit_0001
Revises:
"""

from __future__ import annotations

revision = "ratelimit_0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Nothing to do: this is where every ratelimit database starts."""


def downgrade() -> None:
    """Nothing to undo."""
