"""A deployments table: one row each time a model went into production (a rollback adds another),
with the run, who decided (fullprocess.py or deployment.py) and why.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_hex", sa.String(32), nullable=False, index=True),
        sa.Column("hex", sa.String(32), nullable=False, index=True),
        sa.Column("deployed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(40), nullable=False),
        sa.Column("reason", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("deployments")
