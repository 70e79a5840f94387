"""inbox conversation key: per-conversation order across processes

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    # Rows stored before this revision keep a NULL key: they are finished, or resumed on
    # their own, and simply take no part in ordering.
    with op.batch_alter_table("inbox") as batch_op:
        batch_op.add_column(sa.Column("conversation_key", sa.String(length=512), nullable=True))
    op.create_index(
        "ix_inbox_conversation_pending",
        "inbox",
        ["conversation_key", "id"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_inbox_conversation_pending", table_name="inbox")
    with op.batch_alter_table("inbox") as batch_op:
        batch_op.drop_column("conversation_key")
