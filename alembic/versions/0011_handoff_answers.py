"""handoffs: a person's answer, sent into the chat by the bot

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 05:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = sa.text("answer_due_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("handoffs") as table:
        table.add_column(sa.Column("answer", sa.Text(), nullable=True))
        table.add_column(sa.Column("answered_by", sa.String(length=128), nullable=True))
        table.add_column(sa.Column("answer_due_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(
            sa.Column("answer_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        table.add_column(sa.Column("answer_sent_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("answer_error", sa.Text(), nullable=True))
    op.create_index(
        "ix_handoffs_answers_due",
        "handoffs",
        ["answer_due_at"],
        postgresql_where=DUE,
        sqlite_where=DUE,
    )


def downgrade() -> None:
    op.drop_index("ix_handoffs_answers_due", table_name="handoffs")
    with op.batch_alter_table("handoffs") as table:
        for column in (
            "answer_error",
            "answer_sent_at",
            "answer_attempts",
            "answer_due_at",
            "answered_by",
            "answer",
        ):
            table.drop_column(column)
