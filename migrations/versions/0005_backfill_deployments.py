"""Data: the latest deployment of each model recorded before the deployments table existed
(models.deployed_at is all that was kept), so that --list and /models show it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

REASON = "recorded before deployments were logged: only the latest deployment of this model is known"
models = sa.table("models", sa.column("hex"), sa.column("deployed_at"))
deployments = sa.table("deployments", sa.column("model_hex"), sa.column("hex"), sa.column("deployed_at"),
                       sa.column("decided_by"), sa.column("reason"))


def upgrade() -> None:
    earlier = (sa.select(models.c.hex.label("model_hex"), models.c.hex.label("run_hex"), models.c.deployed_at,
                         sa.literal("unknown"), sa.literal(REASON))
               .where(models.c.deployed_at.is_not(None)).order_by(models.c.deployed_at))
    op.execute(deployments.insert().from_select(["model_hex", "hex", "deployed_at", "decided_by", "reason"], earlier))


def downgrade() -> None:
    op.execute(deployments.delete().where(deployments.c.reason == REASON))
