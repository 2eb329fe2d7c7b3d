"""The schema's own types, on SQLite and on PostgreSQL."""

import datetime as dt

from riskmonitor.store import db


def test_times_come_back_as_aware_utc(engine):
    db.ensure_schema(engine)
    summer = dt.datetime(2026, 7, 1, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with engine.begin() as conn:
        db.start_run(conn, "a" * 16, "test")
        conn.execute(db.runs.update().values(started_at=summer, finished_at=None))
        run = db.get_run(conn, "a" * 16)
    assert run.started_at == summer
    assert run.started_at.utcoffset() == dt.timedelta(0)
    assert run.started_at.hour == 12
    assert run.finished_at is None
