"""The schema of the first release (commit f1e7d7f), as its create_all made it.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer, primary_key=True)


def _hex() -> sa.Column:
    return sa.Column("hex", sa.String(32), nullable=False, index=True)


def upgrade() -> None:
    op.create_table(
        "runs", _id(),
        sa.Column("hex", sa.String(32), nullable=False, unique=True),
        sa.Column("command", sa.String(40), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("message", sa.Text),
    )
    op.create_table(
        "ingested_files", _id(),
        sa.Column("file", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False, index=True),
        sa.Column("size", sa.BigInteger),
        sa.Column("mtime_ns", sa.BigInteger),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text),
        _hex(),
    )
    op.create_table(
        "f1", _id(),
        sa.Column("f1_score", sa.Float, nullable=False),
        _hex(),
        sa.Column("model_hex", sa.String(32), nullable=False),
        sa.Column("dataset", sa.String(40), nullable=False),
        sa.Column("rows", sa.Integer),
        sa.Column("is_production", sa.Boolean, nullable=False),
    )
    op.create_table(
        "feature_stats", _id(),
        sa.Column("feature", sa.String(100), nullable=False),
        sa.Column("mean", sa.Float),
        sa.Column("median", sa.Float),
        sa.Column("std", sa.Float),
        _hex(),
    )
    op.create_table(
        "missing_data", _id(),
        sa.Column("feature", sa.String(100), nullable=False),
        sa.Column("percentage", sa.Float, nullable=False),
        _hex(),
    )
    op.create_table(
        "script_timing", _id(),
        sa.Column("file", sa.String(40), nullable=False),
        sa.Column("timing", sa.Float, nullable=False),
        _hex(),
    )
    op.create_table(
        "models", _id(),
        sa.Column("hex", sa.String(32), nullable=False, unique=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("f1_score", sa.Float, nullable=False),
        sa.Column("train_rows", sa.Integer),
        sa.Column("deployed_at", sa.DateTime(timezone=True)),
        sa.Column("is_production", sa.Boolean, nullable=False),
    )
    op.create_table(
        "data_drift", _id(),
        sa.Column("feature", sa.String(100), nullable=False),
        sa.Column("statistic", sa.Float),
        sa.Column("p_value", sa.Float),
        sa.Column("psi", sa.Float),
        sa.Column("drifted", sa.Boolean, nullable=False),
        _hex(),
    )
    op.create_table(
        "outdated_packages", _id(),
        sa.Column("package", sa.String(100), nullable=False),
        sa.Column("installed", sa.String(60)),
        sa.Column("latest", sa.String(60)),
        _hex(),
    )


def downgrade() -> None:
    for table in ("outdated_packages", "data_drift", "models", "script_timing", "missing_data", "feature_stats",
                  "f1", "ingested_files", "runs"):
        op.drop_table(table)
