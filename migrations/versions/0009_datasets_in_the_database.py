"""The data sets in the database: every ingested labelled row with a unique key (dataset_rows), the
training rows' running statistics (dataset_stats), and the state row every commit moves on
(dataset_state: the tick's serialization point).

A schema revision carries no data: the rows of a file-based release's finaldata.csv and
testdata.csv are loaded by `python dbsetup.py --import-datasets` on the host that holds them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_rows",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("k1", sa.BigInteger, nullable=False),
        sa.Column("k2", sa.BigInteger, nullable=False),
        sa.Column("held_out", sa.Boolean, nullable=False),
        sa.Column("hex", sa.String(32), nullable=False),
        sa.Column("line", sa.Text, nullable=False),
        sa.UniqueConstraint("k1", "k2", name="uq_dataset_rows_key"),
    )
    op.create_table(
        "dataset_stats",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.Column("mean", sa.Float, nullable=False),
        sa.Column("m2", sa.Float, nullable=False),
        sa.Column("missing", sa.BigInteger, nullable=False),
    )
    state = op.create_table(
        "dataset_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("header", sa.Text),
        sa.Column("train_rows", sa.BigInteger, nullable=False),
        sa.Column("test_rows", sa.BigInteger, nullable=False),
        sa.Column("imported_rows", sa.BigInteger),
        sa.Column("imported_at", sa.DateTime(timezone=True)),
    )
    op.bulk_insert(state, [{"id": 1, "version": 0, "train_rows": 0, "test_rows": 0}])


def downgrade() -> None:
    op.drop_table("dataset_state")
    op.drop_table("dataset_stats")
    op.drop_table("dataset_rows")
