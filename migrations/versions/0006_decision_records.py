"""Decision records, the alerts' delivery attempts, and a column of its own for a failed report.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("hex", sa.String(32), nullable=False, index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(40), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("drift_test", sa.String(40)),
        sa.Column("new_f1", sa.Float),
        sa.Column("new_rows", sa.Integer),
        sa.Column("reference_f1", sa.Float),
        sa.Column("reference_rows", sa.Integer),
        sa.Column("drift_std_error", sa.Float),
        sa.Column("drift_interval_low", sa.Float),
        sa.Column("drift_interval_high", sa.Float),
        sa.Column("drift_threshold", sa.Float),
        sa.Column("model_drifted", sa.Boolean),
        sa.Column("data_drifted", sa.Boolean),
        sa.Column("drifted_features", sa.Text),
        sa.Column("retrain_reason", sa.Text),
        sa.Column("champion_hex", sa.String(32)),
        sa.Column("challenger_hex", sa.String(32)),
        sa.Column("champion_f1", sa.Float),
        sa.Column("challenger_f1", sa.Float),
        sa.Column("eval_rows", sa.Integer),
        sa.Column("f1_difference", sa.Float),
        sa.Column("difference_low", sa.Float),
        sa.Column("difference_high", sa.Float),
        sa.Column("gate_rule", sa.String(40)),
        sa.Column("gate_margin", sa.Float),
        sa.Column("deployed", sa.Boolean, nullable=False),
        sa.Column("deploy_reason", sa.Text),
    )
    op.create_table(
        "alert_attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("hex", sa.String(32), index=True),
        sa.Column("event", sa.String(60), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration", sa.Float, nullable=False),
    )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("report_error", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("report_error")
    op.drop_table("alert_attempts")
    op.drop_table("decisions")
