"""The whole tick end to end, in a temporary project, on SQLite and on PostgreSQL."""

from functools import partial

import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import add_csv as generated_csv

import datagen
from riskmonitor.data import datasets
from riskmonitor.model import fitted
from riskmonitor.pipeline.tick import run_tick
from riskmonitor.store import db, storage

add_csv = partial(generated_csv, rows=1500)  # the files of these tests: 1,500 rows unless they say otherwise

HEADER = "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\n"


def table(engine, tbl, *where):
    with engine.connect() as conn:
        return conn.execute(sa.select(tbl).where(*where).order_by(tbl.c.id)).all()


def production(engine):
    with engine.connect() as conn:
        return db.production_model(conn)


def run_status(engine, hex_id):
    return table(engine, db.runs, db.runs.c.hex == hex_id)[0]


def test_first_tick_deploys_and_second_finds_no_new_data(project, engine):
    add_csv(project, "a.csv", rows=1500, seed=1)
    add_csv(project, "b.csv", rows=1500, seed=2)
    first = run_tick(project, engine)
    assert first.status == "deployed"
    model = production(engine)
    assert model.hex == first.hex
    assert storage.sha256_file(project.production_model) == model.sha256
    assert [r.is_production for r in table(engine, db.f1)] == [True]
    files = table(engine, db.ingested_files)
    assert [(f.file, f.rows, f.status, f.hex) for f in files] == [("a.csv", 1500, "ingested", first.hex),
                                                                    ("b.csv", 1500, "ingested", first.hex)]
    second = run_tick(project, engine)
    assert second.status == "no_new_data"
    runs = table(engine, db.runs)
    assert [(r.hex, r.status) for r in runs] == [(first.hex, "deployed"), (second.hex, "no_new_data")]
    assert all(r.finished_at is not None for r in runs)


def test_every_valid_row_is_kept_once(project, engine):
    a = add_csv(project, "a.csv", rows=800, seed=1)
    run_tick(project, engine)
    # A file that repeats half of a.csv and adds new rows: only the new rows are added.

    old, new = pd.read_csv(a), datagen.generate(400, seed=7)
    pd.concat([old.head(400), new]).to_csv(project.input_folder_path / "c.csv", index=False)
    run_tick(project, engine)
    stored = pd.concat([pd.read_csv(project.finaldata_csv), pd.read_csv(project.testdata_csv)])
    assert len(stored) == len(pd.concat([old, new]).drop_duplicates()) == len(stored.drop_duplicates())


def test_flipped_labels_are_drift_and_retrain(project, engine):
    add_csv(project, "a.csv", rows=3000, seed=1)
    first = run_tick(project, engine)
    add_csv(project, "flipped.csv", rows=1500, seed=5, flip=1.0)
    tick = run_tick(project, engine)
    assert tick.status == "deployed"  # trained on the flipped rows, it beats production on their held-out part
    assert tick.decision.model_drifted
    assert tick.decision.drift_test == "pooled"
    assert tick.decision.new_f1 < tick.decision.drift_threshold
    scores = table(engine, db.f1, db.f1.c.hex == tick.hex, db.f1.c.dataset == "newdata")
    assert scores[0].model_hex == first.hex
    assert scores[0].f1_score < 0.5
    assert [m.hex for m in table(engine, db.models)] == [first.hex, tick.hex]
    assert sum(r.is_production for r in table(engine, db.f1)) == 1
    assert sum(m.is_production for m in table(engine, db.models)) == 1


def test_same_distribution_is_no_drift_under_the_nonparametric_test(project, engine, monkeypatch):
    import dataclasses

    config = dataclasses.replace(project, drift_test="nonparametric")
    add_csv(project, "a.csv", rows=3000, seed=1)
    first = run_tick(config, engine)
    add_csv(project, "b.csv", rows=3000, seed=2)
    tick = run_tick(config, engine)
    assert tick.status == "no_drift", tick.summary
    assert production(engine).hex == first.hex


def test_force_retrains_without_new_data(project, engine):
    add_csv(project, "a.csv", rows=1500, seed=1)
    run_tick(project, engine)
    first = production(engine)
    tick = run_tick(project, engine, force=True)
    # The same data trains the same model: without a drift verdict it must be better to replace production.
    assert tick.status == "kept"
    assert len(table(engine, db.models)) == 2
    assert production(engine).hex == first.hex
    assert storage.sha256_file(project.production_model) == first.sha256


def test_renamed_copy_of_an_ingested_file_is_not_new(project, engine):
    a = add_csv(project, "a.csv", rows=1500, seed=1)
    run_tick(project, engine)
    (project.input_folder_path / "a_copy.csv").write_bytes(a.read_bytes())
    assert run_tick(project, engine).status == "no_new_data"


BAD_FILES = {
    "empty.csv": b"",
    "header_only.csv": HEADER.encode(),
    "no_label.csv": b"corporation,lastmonth_activity,lastyear_activity,number_of_employees\nab,1,2,3\n",
    "text_feature.csv": (HEADER + "ab,1,2,3,0\ncd,many,2,3,1\n").encode(),
    "label_two.csv": (HEADER + "ab,1,2,3,0\ncd,1,2,3,2\n").encode(),
    "garbage.csv": bytes(range(256)) * 64,
    "infinite.csv": (HEADER + "ab,1,2,3,0\ncd,inf,2,3,1\n").encode(),
}


def test_bad_files_are_quarantined_untouched_and_good_ones_ingested(project, engine):
    folder = project.input_folder_path
    for name, data in BAD_FILES.items():
        (folder / name).write_bytes(data)
    (folder / "x.csv").mkdir()
    add_csv(project, "good.csv", rows=1500, seed=1)
    tick = run_tick(project, engine)
    assert tick.status == "deployed"
    records = {r.file: r for r in table(engine, db.ingested_files)}
    assert records["good.csv"].status == "ingested"
    for name in [*BAD_FILES, "x.csv"]:
        assert records[name].status == "quarantined", name
        assert records[name].error, name
    assert "header only" in records["header_only.csv"].error
    assert "missing column(s): exited" in records["no_label.csv"].error
    for name, data in BAD_FILES.items():
        assert (folder / name).read_bytes() == data
    assert (folder / "x.csv").is_dir()
    assert run_tick(project, engine).status == "no_new_data"  # not reported again


def test_only_bad_files_is_no_new_data_with_the_reasons(project, engine):
    (project.input_folder_path / "label_two.csv").write_bytes(BAD_FILES["label_two.csv"])
    tick = run_tick(project, engine)
    assert tick.status == "no_new_data"
    assert "label_two.csv (label exited must be 0 or 1, found 2" in run_status(engine, tick.hex).message


def test_a_file_name_with_quotes_and_sql_is_just_a_name(project, engine):
    name = "x'); DROP TABLE runs; --\".csv"
    add_csv(project, name, rows=1500, seed=1)
    tick = run_tick(project, engine)
    assert tick.status == "deployed"
    assert [r.file for r in table(engine, db.ingested_files)] == [name]
    assert set(db.metadata.tables) <= set(sa.inspect(engine).get_table_names())


def test_a_failed_tick_records_why_and_the_next_tick_redoes_the_work(project, engine):
    add_csv(project, "one_class.csv", rows=50, seed=1)

    path = project.input_folder_path / "one_class.csv"
    pd.read_csv(path).assign(exited=0).to_csv(path, index=False)
    with pytest.raises(ValueError, match="needs both values"):
        run_tick(project, engine)
    failed = table(engine, db.runs)[-1]
    assert failed.status == "failed"
    assert "needs both values of exited" in failed.message
    assert table(engine, db.ingested_files) == []  # not counted as ingested: redone next tick
    add_csv(project, "good.csv", rows=1500, seed=2)
    tick = run_tick(project, engine)
    assert tick.status == "deployed"
    assert sorted(r.file for r in table(engine, db.ingested_files)) == ["good.csv", "one_class.csv"]


def test_after_a_crash_the_next_tick_repairs_and_redoes(project, engine):
    add_csv(project, "a.csv", rows=1500, seed=1)
    first = run_tick(project, engine)
    # A tick killed after replacing the production file, before its transaction committed:
    with engine.begin() as conn:
        db.start_run(conn, "deadbeefdeadbeef", "fullprocess.py")
    project.production_model.write_bytes(b"half of another model")
    # Labels inverted: the repaired model scores badly on them (drift); the challenger learns the
    # inverted rows and beats it on their held-out part: deployed.
    add_csv(project, "b.csv", rows=1500, seed=2, flip=1.0)
    tick = run_tick(project, engine)
    assert run_status(engine, "deadbeefdeadbeef").status == "failed"
    assert "interrupted" in run_status(engine, "deadbeefdeadbeef").message
    assert tick.status == "deployed", tick.summary
    assert production(engine).hex == tick.hex
    assert storage.sha256_file(project.production_model) == production(engine).sha256
    assert first.hex in [m.hex for m in table(engine, db.models)]


def test_a_failure_message_names_no_server_path(project, engine):
    add_csv(project, "a.csv", rows=1500, seed=1)
    first = run_tick(project, engine)
    (project.project_dir / production(engine).path).unlink()  # the archived copy is gone, here and in the database
    with engine.begin() as conn:
        conn.execute(db.artifacts.delete().where(db.artifacts.c.kind == "model"))
    project.production_model.write_bytes(b"not the model")  # and the production file is damaged
    with pytest.raises(storage.ModelIntegrityError, match="archived copy"):
        run_tick(project, engine)
    message = table(engine, db.runs)[-1].message
    assert message.startswith(f"ModelIntegrityError: models/model_{first.hex}.json, the archived copy")
    assert str(project.project_dir) not in message


# --- hardening (issue 11) -------------------------------------------------------------------------

def test_a_value_pandas_cannot_convert_quarantines_its_file_not_the_tick(project, engine):
    (project.input_folder_path / "huge.csv").write_text(HEADER + "ab,1," + "9" * 400 + ",3,0\n")
    add_csv(project, "good.csv", seed=1)
    tick = run_tick(project, engine)
    assert tick.status == "deployed"
    records = {r.file: r for r in table(engine, db.ingested_files)}
    assert records["huge.csv"].status == "quarantined"
    assert records["good.csv"].status == "ingested"
    assert run_tick(project, engine).status == "no_new_data"


def test_a_file_name_that_is_not_utf8_is_recorded_escaped(project, engine):
    import os

    good = add_csv(project, "good.csv", seed=1)
    latin1 = os.path.join(os.fsencode(project.input_folder_path), b"caf\xe9.csv")
    with open(latin1, "wb") as handle:
        handle.write(good.read_bytes().replace(b"\n", b"\r\n"))  # other bytes: a new file, not a copy
    good.unlink()
    tick = run_tick(project, engine)
    assert tick.status == "deployed"
    assert [r.file for r in table(engine, db.ingested_files)] == ["caf\\xe9.csv"]
    assert run_tick(project, engine).status == "no_new_data"


def test_a_failed_tick_leaves_no_model_file_behind(project, engine, monkeypatch):
    add_csv(project, "a.csv", seed=1)

    calls = []

    def broken(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("the database went away")
    monkeypatch.setattr(db, "record_model", broken)
    with pytest.raises(RuntimeError):
        run_tick(project, engine)
    assert len(calls) == 1
    assert list(project.output_model_path.glob("model_*")) == []
    assert table(engine, db.runs)[-1].status == "failed"


def test_a_fifo_in_the_input_folder_is_quarantined_once(project, engine):
    import os

    os.mkfifo(project.input_folder_path / "x.csv")
    add_csv(project, "good.csv", seed=1)
    tick = run_tick(project, engine)  # hashing or reading the FIFO would block here for good
    assert tick.status == "deployed"
    records = table(engine, db.ingested_files)
    assert [(r.file, r.status, r.error) for r in records if r.file == "x.csv"] == [
        ("x.csv", "quarantined", "not a regular file: a FIFO (named pipe)")]
    assert run_tick(project, engine).status == "no_new_data"
    assert len(table(engine, db.ingested_files)) == 2


def test_a_tick_over_its_time_limit_fails(project, engine, monkeypatch):
    import dataclasses
    import time

    from riskmonitor.data import ingest

    add_csv(project, "a.csv", seed=1)
    slept = []
    monkeypatch.setattr(ingest, "ingest_files", lambda *args, **kwargs: slept.append(args) or time.sleep(30))
    started = time.monotonic()
    with pytest.raises(Exception, match="time limit"):
        run_tick(dataclasses.replace(project, tick_timeout_seconds=1), engine)
    assert time.monotonic() - started < 20
    assert len(slept) == 1
    run = table(engine, db.runs)[-1]
    assert run.status == "failed"
    assert "longer than its time limit of 1 s" in run.message


def test_trailing_commas_quarantine_the_file(project, engine):

    path = add_csv(project, "good.csv", seed=1)
    frame = pd.read_csv(path).assign(extra=7)
    lines = frame.to_csv(index=False).splitlines()
    (project.input_folder_path / "trailing.csv").write_text(lines[0].rsplit(",", 1)[0] + "\n"
                                                            + "".join(line + ",\n" for line in lines[1:]))
    tick = run_tick(project, engine)
    records = {r.file: r for r in table(engine, db.ingested_files)}
    assert records["trailing.csv"].status == "quarantined"
    assert "fields, the header has 5" in records["trailing.csv"].error
    assert tick.status == "deployed"


def test_ids_reach_the_data_sets_exactly_as_written(project, engine):

    path = add_csv(project, "a.csv", seed=1)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[:5, "corporation"] = ["00012", "NA", "null", "None", "N/A", "0"]
    frame.to_csv(path, index=False)
    run_tick(project, engine)
    stored = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False)
                        for p in (project.finaldata_csv, project.testdata_csv)])
    assert {"00012", "NA", "null", "None", "N/A", "0"} <= set(stored["corporation"])


def test_deleting_the_exports_loses_nothing(project, engine):

    def exported():
        return [pd.read_csv(p, dtype=str, keep_default_na=False).sort_values("corporation").to_numpy().tolist()
                for p in (project.finaldata_csv, project.testdata_csv)]

    add_csv(project, "a.csv", rows=1500, seed=1)
    add_csv(project, "b.csv", rows=1500, seed=2)
    run_tick(project, engine)
    before = exported()
    assert sum(map(len, before)) == 3000
    project.finaldata_csv.unlink()  # the export alone: its mark stays, and no longer matches
    for path in project.testdata_csv.parent.iterdir():  # testdata.csv and its mark
        path.unlink()
    assert run_tick(project, engine).status == "no_new_data"  # no new data: the exports are rewritten anyway
    assert exported() == before
    with open(project.testdata_csv, "a") as handle:  # changed by hand: rewritten from the database
        handle.write("zz,1,2,3,0\n")
    add_csv(project, "c.csv", seed=3)
    tick = run_tick(project, engine)
    assert tick.summary.startswith("1 file(s) ingested, 1500 new row(s)")
    after = exported()
    assert sum(map(len, after)) == 4500
    assert ["zz", "1", "2", "3", "0"] not in after[1]
    final, test = (pd.read_csv(p) for p in (project.finaldata_csv, project.testdata_csv))
    with engine.connect() as conn:  # the exports hold what the database holds, side by side
        state = datasets.state(conn)
    assert (len(final), len(test)) == (state.train_rows, state.test_rows)


def test_a_copy_with_other_line_endings_adds_no_rows(project, engine):
    a = add_csv(project, "a.csv", seed=1)
    run_tick(project, engine)
    (project.input_folder_path / "a_crlf.csv").write_bytes(a.read_bytes().replace(b"\n", b"\r\n"))
    tick = run_tick(project, engine)
    assert tick.summary.startswith("1 file(s) ingested, 0 new row(s)")
    assert tick.status == "no_new_data"
    assert [(r.file, r.rows) for r in table(engine, db.ingested_files)] == [("a.csv", 1500), ("a_crlf.csv", 0)]


def test_a_huge_bad_cell_and_many_bad_files_give_bounded_messages(project, engine):
    (project.input_folder_path / "huge_cell.csv").write_text(HEADER + "ab," + "x" * 2_000_000 + ",2,3,0\n")
    for n in range(40):
        (project.input_folder_path / f"bad_{n:02}.csv").write_text(HEADER + f"ab{n},{'y' * 3000},2,3,0\n")
    add_csv(project, "good.csv", seed=1)
    tick = run_tick(project, engine)
    assert tick.status == "deployed"
    assert max(len(r.error or "") for r in table(engine, db.ingested_files)) < 300
    message = run_status(engine, tick.hex).message
    assert len(message) <= 4000
    assert "and 21 more" in message


def test_a_failed_tick_stores_no_row_and_the_next_counts_them(project, engine, monkeypatch):

    from riskmonitor.pipeline import tick as tick_module

    add_csv(project, "a.csv", seed=1)
    calls = []

    def killed(*args):
        calls.append(args)
        raise RuntimeError("killed before the tick's transaction")
    monkeypatch.setattr(tick_module, "_record", killed)
    with pytest.raises(RuntimeError, match="killed"):
        run_tick(project, engine)
    assert len(calls) == 1
    assert table(engine, db.dataset_rows) == []  # the rows go with the tick's transaction
    assert not project.finaldata_csv.exists()
    monkeypatch.undo()
    tick = run_tick(project, engine)
    assert tick.status == "deployed"
    assert tick.summary.startswith("1 file(s) ingested, 1500 new row(s)")  # found again, counted once
    assert [(r.file, r.rows) for r in table(engine, db.ingested_files)] == [("a.csv", 1500)]
    assert sum(len(pd.read_csv(p)) for p in (project.finaldata_csv, project.testdata_csv)) == 1500


def decision_rows(engine) -> dict:
    return {r.hex: r for r in table(engine, db.decisions)}


def test_every_tick_that_scores_or_trains_leaves_one_decision_record(project, engine):
    add_csv(project, "a.csv", rows=2000, seed=1)
    first = run_tick(project, engine)
    reference = production(engine).f1_score
    add_csv(project, "b.csv", rows=2000, seed=2)
    checked = run_tick(project, engine)
    (project.input_folder_path / "label_two.csv").write_bytes(BAD_FILES["label_two.csv"])
    quarantined = run_tick(project, engine)
    idle = run_tick(project, engine)
    forced = run_tick(project, engine, force=True)
    records = decision_rows(engine)
    assert sorted(records) == sorted([first.hex, checked.hex, forced.hex])  # not the quarantine-only or idle ticks
    assert (quarantined.status, idle.status) == ("no_new_data", "no_new_data")
    one = records[first.hex]
    assert (one.decided_by, one.deployed, one.challenger_hex, one.champion_hex) == ("fullprocess.py", True, first.hex, None)
    assert (one.model_drifted, one.data_drifted, one.gate_rule) == (None, None, "first model")
    assert one.retrain_reason == "no model in production yet"
    two = records[checked.hex]
    assert (two.drift_test, two.new_rows, two.reference_f1) == ("pooled", 2000, reference)
    assert two.drift_std_error > 0
    assert two.model_drifted is (checked.status != "no_drift")
    assert two.model_drifted is (two.new_f1 < two.drift_threshold)
    assert two.data_drifted is False  # two samples of one distribution
    assert two.drifted_features == "[]"
    three = records[forced.hex]
    assert (three.retrain_reason, three.model_drifted) == ("forced (--force)", None)
    assert three.gate_rule == "superiority"  # without a drift verdict equivalent models are not swapped
    assert three.f1_difference == pytest.approx(three.challenger_f1 - three.champion_f1)
    assert three.deployed is (forced.status == "deployed") is (three.difference_low > 0)
    assert run_status(engine, checked.hex).message == checked.summary  # the message is rendered from the record


# --- the default drift decisions, pinned with fixed seeds at a small scale (bench/decisions.py measures them) ---

def twenty_unchanged_ticks(config) -> list:
    """A model on 10,000 rows whose held-out reference F1 came out high (seed 5), then 20 ticks of
    2,000 rows of the same distribution."""
    engine = db.make_engine(config.database_url)
    add_csv(config, "first.csv", rows=10_000, seed=5)
    assert run_tick(config, engine).status == "deployed"
    ticks = []
    for number in range(20):
        add_csv(config, f"batch_{number}.csv", rows=2000, seed=5001 + number)
        ticks.append(run_tick(config, engine))
    engine.dispose()
    return ticks


def test_twenty_unchanged_ticks_of_2000_rows_give_at_most_one_alarm(sqlite_project, no_reports):
    ticks = twenty_unchanged_ticks(sqlite_project)
    assert sum(t.status != "no_drift" for t in ticks) <= 1, [t.summary for t in ticks]
    assert all(t.decision.drift_test == "pooled" for t in ticks)
    # Evidence pooled since deployment: the latest 3 batches compared, the 17 before them in the reference.
    assert ticks[-1].drift.rule.endswith("of 3 batch(es) since deployment; the reference pools 17 earlier batch(es) "
                                         "with its own rows")
    assert ticks[-1].drift.reference_rows > 17 * 2000


def test_the_same_ticks_alarm_often_under_the_raw_test(sqlite_project, no_reports):
    import dataclasses

    ticks = twenty_unchanged_ticks(dataclasses.replace(sqlite_project, drift_test="raw"))
    assert sum(t.drift.drifted for t in ticks) >= 3  # the pinned case above is not an easy one


def test_a_full_flip_of_200_rows_is_caught_on_its_first_tick(project, engine, no_reports):
    add_csv(project, "first.csv", rows=10_000, seed=1)
    first = run_tick(project, engine)
    add_csv(project, "flipped.csv", rows=200, seed=5, flip=1.0)
    tick = run_tick(project, engine)
    assert tick.drift.drifted
    assert tick.status in ("deployed", "kept")
    score = table(engine, db.f1, db.f1.c.hex == tick.hex, db.f1.c.dataset == "newdata")[0]
    assert (score.model_hex, score.tp + score.fp + score.fn + score.tn) == (first.hex, 200)
    assert score.f1_score == pytest.approx(2 * score.tp / (2 * score.tp + score.fp + score.fn))
    reference = table(engine, db.models, db.models.c.hex == first.hex)[0]
    assert reference.f1_score == pytest.approx(2 * reference.tp / (2 * reference.tp + reference.fp + reference.fn))


@pytest.mark.parametrize("retrains", [True, False])
def test_data_drift_alone_retrains_unless_switched_off(sqlite_project, no_reports, retrains):
    import dataclasses

    config = dataclasses.replace(sqlite_project, data_drift_retrains=retrains)
    engine = db.make_engine(config.database_url)
    add_csv(config, "first.csv", rows=10_000, seed=1)
    run_tick(config, engine)
    add_csv(config, "bigger.csv", rows=2000, seed=5, scale={"number_of_employees": 3})
    tick = run_tick(config, engine)
    engine.dispose()
    assert tick.decision.drifted_features == ("number_of_employees",)
    assert not tick.drift.drifted  # the model copes: only data drift speaks
    assert tick.status in (("deployed", "kept") if retrains else ("no_drift",))
    assert tick.decision.retrain_reason == ("data drift" if retrains else None)


def test_after_a_full_flip_the_next_deployment_serves_the_new_regime(project, engine, no_reports):
    from riskmonitor.model.scoring import load_production_model, score_model

    add_csv(project, "first.csv", rows=10_000, seed=1)
    first = run_tick(project, engine)
    add_csv(project, "flipped.csv", rows=2000, seed=5, flip=1.0)
    tick = run_tick(project, engine)
    assert tick.status == "deployed", tick.summary
    model = table(engine, db.models, db.models.c.hex == tick.hex)[0]
    with engine.connect() as conn:
        final_rows = datasets.state(conn).train_rows
    assert model.train_first_row + model.train_rows == final_rows  # the latest rows: the flipped ones
    assert 1500 < model.train_rows < 1700
    fresh = datagen.generate(5000, seed=6, flip=1.0)
    with engine.connect() as conn:
        _, serving = load_production_model(conn, project)
    old = fitted.load(project.project_dir / table(engine, db.models, db.models.c.hex == first.hex)[0].path,
                             table(engine, db.models, db.models.c.hex == first.hex)[0].sha256)
    assert score_model(serving, fresh, project) > score_model(old, fresh, project) + 0.2


def small_ticks(config, engine, count: int, seed: int, rows: int = 200, **options) -> list:
    """`count` ticks of one file each (200 rows unless told; datagen options), as bench/decisions.py feeds them."""
    ticks = []
    for number in range(count):
        add_csv(config, f"batch_{seed}_{number}.csv", rows=rows, seed=seed + number, **options)
        ticks.append(run_tick(config, engine))
    return ticks


@pytest.fixture
def sent(monkeypatch) -> list[str]:
    """The events of each alert the ticks send (one message each), instead of sending them."""
    from riskmonitor import alerts

    events = []
    monkeypatch.setattr(alerts, "send", lambda config, engine, run_hex, event, text, decision=None: events.append(event))
    return events


def test_a_late_flip_in_small_batches_is_one_episode_that_deploys_within_8_ticks(sqlite_project, no_reports, sent):
    engine = db.make_engine(sqlite_project.database_url)
    add_csv(sqlite_project, "first.csv", rows=10_000, seed=1)
    first = run_tick(sqlite_project, engine)
    quiet = small_ticks(sqlite_project, engine, 5, seed=100)  # unchanged: no episode
    assert [t.status for t in quiet] == ["no_drift"] * 5, [t.summary for t in quiet]
    changed = small_ticks(sqlite_project, engine, 8, seed=200, flip=1.0)
    engine.dispose()
    statuses = [t.status for t in changed]
    assert "deployed" in statuses, [t.summary for t in changed]
    deployed_at = statuses.index("deployed")
    assert statuses[:deployed_at] == ["kept"] * deployed_at  # production stays while the evidence grows
    before = [t.decision for t in changed[:deployed_at]]
    assert all(d.challenger_hex is None for d in before)  # no challenger the gate cannot judge
    assert all("no challenger until the gate can judge one" in t.summary for t in changed[:deployed_at])
    episode = changed[deployed_at].decision.episode
    assert episode is not None
    assert [d.episode for d in before] == [episode] * deployed_at  # one episode from the drift to the deployment
    assert changed[deployed_at].decision.episode_outcome == "deployed"
    assert changed[deployed_at].decision.eval_rows >= 200  # judged on the episode's held-out rows
    assert production(engine).hex == changed[deployed_at].hex != first.hex
    assert sent == ["deployed", "drift", "deployed"]  # the first model; the episode opened, and its deployment


def test_a_benign_shift_retrains_at_most_twice_in_6_ticks_and_is_acknowledged(sqlite_project, no_reports, sent):
    engine = db.make_engine(sqlite_project.database_url)
    add_csv(sqlite_project, "first.csv", rows=10_000, seed=3, rule="bands")
    assert run_tick(sqlite_project, engine).status == "deployed"
    # The bands rule ignores lastyear_activity: tripling it is data drift that costs the model nothing.
    ticks = small_ticks(sqlite_project, engine, 6, seed=300, rows=2000, rule="bands", scale={"lastyear_activity": 3.0})
    engine.dispose()
    retrains = [t for t in ticks if t.decision.challenger_hex is not None]
    assert 1 <= len(retrains) <= 2, [t.summary for t in ticks]
    assert ticks[0].decision.data_drifted
    outcomes = [t.decision.episode_outcome for t in ticks]
    assert "acknowledged" in outcomes or "deployed" in outcomes, outcomes
    if "acknowledged" in outcomes:  # the data-drift reference moved: the same shift is no longer drift
        after = ticks[outcomes.index("acknowledged") + 1:]
        assert all(not t.decision.data_drifted for t in after), [t.summary for t in after]
    # One message at most: data drift alone tells no one until its episode deploys (the deployment's message).
    assert sent[0] == "deployed"  # the first model
    assert sent[1:] == (["deployed"] if "deployed" in outcomes else []), (sent, [t.summary for t in ticks])


def test_degrading_is_said_once_per_episode(sqlite_project, no_reports, sent):
    """Labels that become noise: production's F1 falls and no challenger can beat it."""
    engine = db.make_engine(sqlite_project.database_url)
    add_csv(sqlite_project, "first.csv", rows=10_000, seed=1)
    first = run_tick(sqlite_project, engine)
    ticks = small_ticks(sqlite_project, engine, 4, seed=400, rows=2000, flip=0.5)
    engine.dispose()
    verdicts = [t.decision.verdict for t in ticks]
    assert verdicts[:2] == ["kept", "degrading"], [t.summary for t in ticks]  # the second challenger that loses
    assert "degrading: production's F1 has fallen and no challenger beats it" in ticks[1].summary
    assert len({t.decision.episode for t in ticks}) == 1
    assert all(t.decision.episode_outcome == "open" for t in ticks)
    assert sent == ["deployed", "drift", "degrading"]  # the first model; then each outcome of the episode once
    assert production(engine).hex == first.hex
    # Within the episode a challenger only when the evidence has grown by half: 2,000 rows, then 4,000 (3,000
    # is not a tick's worth), 6,000, and 8,000 is not yet 9,000.
    assert [t.decision.challenger_hex is not None for t in ticks] == [True, True, True, False]


def test_an_episode_whose_data_returns_ends_as_returned(sqlite_project, no_reports, sent):
    engine = db.make_engine(sqlite_project.database_url)
    add_csv(sqlite_project, "first.csv", rows=10_000, seed=3, rule="bands")
    assert run_tick(sqlite_project, engine).status == "deployed"
    blip = small_ticks(sqlite_project, engine, 1, seed=500, rule="bands", scale={"lastyear_activity": 3.0})
    assert (blip[0].decision.data_drifted, blip[0].status) == (True, "kept"), blip[0].summary  # opened; too few rows to judge
    after = small_ticks(sqlite_project, engine, 3, seed=600, rule="bands")
    engine.dispose()
    assert [t.decision.episode_outcome for t in after] == ["open", "open", "returned"], [t.summary for t in after]
    assert {t.decision.episode for t in [*blip, *after]} == {blip[0].decision.episode}
    assert after[-1].status == "no_drift"
    assert "the data returned: the drift episode is over" in after[-1].summary
    assert all(t.decision.challenger_hex is None for t in [*blip, *after])  # nothing to judge, nothing trained
    assert sent == ["deployed"]  # the first model; a shift that returned before it cost F1 alerted no one
