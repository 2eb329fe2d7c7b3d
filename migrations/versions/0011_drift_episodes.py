"""Drift episodes: the rows since a drift began are the challenger's window and the gate's evidence until
the episode ends (episodes), and each decision says its verdict, its episode and the episode's outcome.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "episodes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_hex", sa.String(32), nullable=False),
        sa.Column("opened_hex", sa.String(32), nullable=False),
        sa.Column("start_rows", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("closed_hex", sa.String(32)),
        sa.Column("challenger_rows", sa.BigInteger),
        sa.Column("alerted", sa.Text),
        *(sa.Column(f"reference_{count}", sa.Integer) for count in ("tp", "fp", "fn", "tn")),
    )
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("verdict", sa.String(20)))
        batch.add_column(sa.Column("episode", sa.Integer))
        batch.add_column(sa.Column("episode_outcome", sa.String(20)))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("episode_outcome")
        batch.drop_column("episode")
        batch.drop_column("verdict")
    op.drop_table("episodes")
