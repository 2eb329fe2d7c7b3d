"""Confusion counts with each F1 (f1) and with each model's held-out score (models), and the
first row of finaldata.csv a model trained on (models.train_first_row): pooled drift evidence and
its standard error, and what each model learned.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COUNTS = ("tp", "fp", "fn", "tn")


def upgrade() -> None:
    with op.batch_alter_table("f1") as batch:
        for name in COUNTS:
            batch.add_column(sa.Column(name, sa.Integer))
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("train_first_row", sa.Integer))
        for name in COUNTS:
            batch.add_column(sa.Column(name, sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        for name in (*COUNTS, "train_first_row"):
            batch.drop_column(name)
    with op.batch_alter_table("f1") as batch:
        for name in COUNTS:
            batch.drop_column(name)
