"""knowledge base: the embedding model that embedded each document's chunks

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 05:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Documents stored before this revision keep a NULL model: unknown, so the next `kb add`
    # re-embeds them; until then the index uses them as before, when their size fits.
    op.add_column(
        "documents", sa.Column("embedding_model", sa.String(length=1024), nullable=True)
    )


def downgrade() -> None:
    # Not a batch: on SQLite that copies the table and drops the old one, and with foreign keys
    # on, dropping `documents` deletes every chunk (ON DELETE CASCADE). SQLite 3.35+ drops a
    # column in place.
    op.drop_column("documents", "embedding_model")
