"""Diagnostics: the drift verdict at any size, the rows a tick records, outdated packages."""

import dataclasses
import datetime as dt
import json
import logging
import pathlib
import subprocess

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import OUTDATED, add_csv, stored_frames

import datagen
import diagnostics as diagnostics_command
from riskmonitor.drift.data_drift import data_drift, ks_critical_value, population_stability_index
from riskmonitor.model.training import REFERENCE_ROWS, reference_path
from riskmonitor.pipeline.tick import run_tick
from riskmonitor.reporting import diagnostics
from riskmonitor.store import db


def rows_of(engine, table, hex_id):
    with engine.connect() as conn:
        return db.run_rows(conn, table, hex_id)


# --- the drift verdict -------------------------------------------------------------------------

@pytest.mark.parametrize(("rows", "seeds"), [(1_000, range(5)), (100_000, range(3)), (1_000_000, range(1))])
def test_one_distribution_is_not_drifted_at_any_size(sqlite_project, rows, seeds):
    project = sqlite_project
    for seed in seeds:
        reference = datagen.generate(min(rows, REFERENCE_ROWS), seed=100 + seed)  # what training saves
        result = data_drift(datagen.generate(rows, seed=seed), reference, project)
        assert [r["feature"] for r in result] == list(project.features)
        assert not any(r["drifted"] for r in result), result
        assert max(r["psi"] for r in result) < project.psi_threshold / 2


@pytest.mark.parametrize("rows", [300, 1_000, 100_000])
@pytest.mark.parametrize("feature", ["lastmonth_activity", "lastyear_activity", "number_of_employees"])
def test_a_feature_multiplied_by_3_is_drifted(sqlite_project, rows, feature):
    project = sqlite_project
    reference = datagen.generate(5_000, seed=1)
    new = datagen.generate(rows, seed=2)
    new[feature] = new[feature] * 3
    verdicts = {r["feature"]: r["drifted"] for r in data_drift(new, reference, project)}
    assert verdicts == {f: f == feature for f in project.features}


@pytest.mark.parametrize("rows", [20_000, 200_000])
def test_lastmonth_activity_times_1_2_alone_is_drifted_from_20000_rows(sqlite_project, rows):
    reference = datagen.generate(8_000, seed=1)
    new = datagen.generate(rows, seed=2, scale={"lastmonth_activity": 1.2})
    result = {r["feature"]: r for r in data_drift(new, reference, sqlite_project)}
    assert {f: r["drifted"] for f, r in result.items()} == {f: f == "lastmonth_activity" for f in sqlite_project.features}
    assert result["lastmonth_activity"]["psi"] < sqlite_project.psi_threshold  # PSI alone misses it; KS D sees it


def test_small_batches_need_a_larger_ks_d(sqlite_project):
    critical = [ks_critical_value(n, 8_000, sqlite_project.data_drift_confidence) for n in (200, 2_000, 20_000)]
    assert critical == sorted(critical, reverse=True)
    assert critical[0] > 0.1 > sqlite_project.ks_threshold  # 200 rows: noise alone reaches well past the threshold
    assert ks_critical_value(0, 8_000, 0.999) == np.inf
    for seed in range(10):  # 200 rows of one distribution: never drifted
        result = data_drift(datagen.generate(200, seed=seed), datagen.generate(8_000, seed=99), sqlite_project)
        assert not any(r["drifted"] for r in result), result


def test_psi_copes_with_repeated_values_out_of_range_values_and_missing_values():
    zeros = np.zeros(1_000)
    assert population_stability_index(zeros, zeros, 10) == 0
    skewed = np.r_[np.zeros(800), np.arange(200)]  # most quantiles are 0: the bins collapse, not break
    assert population_stability_index(skewed, skewed[::-1], 10) == pytest.approx(0)
    beyond = population_stability_index(np.arange(1_000), np.arange(5_000, 6_000), 10)
    assert np.isfinite(beyond)
    assert beyond > 1  # everything lands in the open-ended top bin
    missing = population_stability_index(np.arange(1_000), np.full(1_000, np.nan), 10)
    assert missing > 1  # a feature that went missing has drifted


def test_data_drift_of_nothing_is_no_rows(sqlite_project):
    assert data_drift(datagen.generate(0), datagen.generate(100), sqlite_project) == []


# --- what a tick records ---------------------------------------------------------------------------

def write_csv(config, name, frame):
    frame.to_csv(config.input_folder_path / name, index=False)


def with_missing_values(frame, seed):
    """Blank out some feature values (and an id): missing data must be measured, not only zeros."""
    rng = np.random.default_rng(seed)
    frame = frame.astype({"lastmonth_activity": "float64", "number_of_employees": "float64"})
    frame.loc[rng.random(len(frame)) < 0.05, "lastmonth_activity"] = np.nan
    frame.loc[rng.random(len(frame)) < 0.01, "number_of_employees"] = np.nan
    frame.loc[rng.random(len(frame)) < 0.02, "corporation"] = None
    return frame


def assert_rows_describe_finaldata(engine, config, hex_id):
    final, _ = stored_frames(config, engine)
    stats = rows_of(engine, db.feature_stats, hex_id)
    assert [s.feature for s in stats] == list(config.features)
    for s in stats:
        assert (s.mean, s.median, s.std) == pytest.approx(
            (final[s.feature].mean(), final[s.feature].median(), final[s.feature].std()), rel=1e-12)
    missing = {m.feature: m.percentage for m in rows_of(engine, db.missing_data, hex_id)}
    assert missing == pytest.approx(final[list(config.columns)].isna().mean().to_dict(), rel=1e-12)
    return final


def test_a_deploying_tick_records_diagnostics_of_its_training_data(project, engine, no_reports):
    write_csv(project, "a.csv", with_missing_values(datagen.generate(3_000, seed=1), seed=1))
    tick = run_tick(project, engine)
    assert tick.status == "deployed"
    final = assert_rows_describe_finaldata(engine, project, tick.hex)
    assert 0 < dict((m.feature, m.percentage) for m in rows_of(engine, db.missing_data, tick.hex))["lastmonth_activity"]
    assert rows_of(engine, db.data_drift, tick.hex) == []  # nothing in production to compare with
    assert [(p.package, p.installed, p.latest) for p in rows_of(engine, db.outdated_packages, tick.hex)] == [
        tuple(p.values()) for p in OUTDATED]
    reference = pd.read_csv(reference_path(project, tick.hex))
    assert list(reference.columns) == list(project.features)
    assert len(reference) == len(final)  # all of the training rows, below the sample size
    assert [t.file for t in rows_of(engine, db.script_timing, tick.hex)] == ["ingestion.py", "training.py"]


def test_a_later_tick_records_drift_of_its_new_rows_against_the_production_training_data(project, engine, no_reports):
    add_csv(project, "a.csv", 3_000, seed=1)
    first = run_tick(project, engine)
    # Activity tripled and labels inverted: data drift and model drift; the challenger learns the new
    # rows and beats production on their held-out part.
    shifted = datagen.generate(2_000, seed=2, shift=3, flip=1.0)
    write_csv(project, "shifted.csv", shifted)
    second = run_tick(project, engine)
    assert second.status == "deployed", second.summary
    assert second.decision.drifted_features == ("lastmonth_activity", "lastyear_activity")
    drift = rows_of(engine, db.data_drift, second.hex)
    expected = data_drift(shifted, pd.read_csv(reference_path(project, first.hex)), project)
    assert [(d.feature, d.statistic, d.p_value, d.psi, d.drifted) for d in drift] == [
        (e["feature"], pytest.approx(e["statistic"]), pytest.approx(e["p_value"]), pytest.approx(e["psi"]), e["drifted"])
        for e in expected]
    assert {d.feature: d.drifted for d in drift} == {
        "lastmonth_activity": True, "lastyear_activity": True, "number_of_employees": False}
    assert_rows_describe_finaldata(engine, project, second.hex)
    with engine.connect() as conn:
        assert [t["file"] for t in diagnostics.execution_time(conn, second.hex)] == [
            t.file for t in rows_of(engine, db.script_timing, second.hex)]


def test_a_tick_without_new_data_records_no_diagnostics(project, engine, no_reports):
    add_csv(project, "a.csv", 1_000, seed=1)
    run_tick(project, engine)
    idle = run_tick(project, engine)
    assert idle.status == "no_new_data"
    for table in db.DIAGNOSTIC_TABLES.values():
        assert rows_of(engine, table, idle.hex) == []


def test_model_predictions_on_a_frame_and_on_a_csv_file(project, engine, no_reports):
    add_csv(project, "a.csv", 2_000, seed=1)
    run_tick(project, engine)
    _, test = stored_frames(project, engine)
    predicted = diagnostics.model_predictions(project, engine)
    assert len(predicted) == len(test)
    assert set(predicted) <= {0, 1}
    assert diagnostics.model_predictions(project, engine, test) == predicted
    assert diagnostics.model_predictions(project, engine, "testdata/testdata.csv") == predicted


# --- outdated packages ---------------------------------------------------------------------------

@pytest.fixture
def checking(sqlite_project):
    """A project that checks for outdated packages (the test projects do not, to stay offline)."""
    return dataclasses.replace(sqlite_project, outdated_timeout_seconds=20)


def fake_pip(monkeypatch, listed):
    def run(command, **kwargs):
        assert command[1:4] == ["-m", "pip", "list"]
        assert kwargs["timeout"] > 0
        return subprocess.CompletedProcess(command, 0, stdout=json.dumps(listed), stderr="")

    monkeypatch.setattr(subprocess, "run", run)


def test_outdated_packages_are_the_projects_requirements(checking, monkeypatch):
    (checking.project_dir / "requirements.txt").write_text(
        "# runtime\npandas>=2.2,<4\nScikit_Learn>=1.5\n-r other.txt\npython-dotenv[cli] >=1 ; python_version > '3'\n")
    fake_pip(monkeypatch, [{"name": name, "version": "1.0", "latest_version": "2.0", "latest_filetype": "wheel"}
                           for name in ("pandas", "scikit-learn", "python-dotenv", "setuptools")])
    assert [p["package"] for p in diagnostics.outdated_packages(checking)] == [
        "pandas", "scikit-learn", "python-dotenv"]
    assert diagnostics.outdated_packages(checking)[0] == {"package": "pandas", "installed": "1.0", "latest": "2.0"}


def test_outdated_packages_without_requirements_file_lists_everything(checking, monkeypatch):
    fake_pip(monkeypatch, [{"name": "setuptools", "version": "65.5.0", "latest_version": "84.2.1"}])
    assert diagnostics.outdated_packages(checking) == [
        {"package": "setuptools", "installed": "65.5.0", "latest": "84.2.1"}]


def test_outdated_packages_never_hang_a_tick(checking, caplog):
    impatient = dataclasses.replace(checking, outdated_timeout_seconds=0.01)  # pip cannot even start
    with caplog.at_level(logging.WARNING):
        assert diagnostics.outdated_packages(impatient) == []
    assert "no answer within" in caplog.text


@pytest.mark.parametrize("failure", [subprocess.CalledProcessError(2, "pip"), OSError("no such file")])
def test_outdated_packages_are_empty_when_pip_fails(checking, monkeypatch, caplog, failure):
    def run(command, **kwargs):
        raise failure

    monkeypatch.setattr(subprocess, "run", run)
    assert diagnostics.outdated_packages(checking) == []
    assert "pip list failed" in caplog.text


def test_outdated_check_can_be_turned_off(sqlite_project, monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    assert diagnostics.outdated_packages(dataclasses.replace(sqlite_project, outdated_timeout_seconds=0)) == []


def test_execution_time_is_the_latest_ticks_without_a_run_id(sqlite_project):
    engine = db.make_engine(sqlite_project.database_url)
    db.ensure_schema(engine)
    with engine.begin() as conn:
        for hex_id, seconds in (("a", 1.0), ("b", 2.0)):
            conn.execute(sa.insert(db.script_timing).values(file="ingestion.py", timing=seconds, hex=hex_id))
        assert diagnostics.execution_time(conn) == [{"file": "ingestion.py", "timing": 2.0, "hex": "b"}]
        assert diagnostics.execution_time(conn, "a")[0]["timing"] == 1.0
    engine.dispose()


# --- the outdated-packages check: at most once a day, never waited for by a tick ------------------

def store_check(engine, packages, hours_ago: float, error=None):
    db.ensure_schema(engine)
    with engine.begin() as conn:
        db.record_package_check(conn, packages, error)
        last = conn.execute(sa.select(sa.func.max(db.package_checks.c.id))).scalar()
        conn.execute(db.package_checks.update().where(db.package_checks.c.id == last)
                     .values(checked_at=db.now() - dt.timedelta(hours=hours_ago)))


def started_refreshes(monkeypatch) -> list:
    started = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a tick must not wait for pip"))
    monkeypatch.setattr(subprocess, "Popen", lambda command, **options: started.append((command, options)))
    return started


def test_a_fresh_answer_is_served_without_asking_pip(project, engine, monkeypatch):
    checking = dataclasses.replace(project, outdated_timeout_seconds=20)
    store_check(engine, OUTDATED, hours_ago=23)
    started = started_refreshes(monkeypatch)
    assert diagnostics.known_outdated(checking, engine) == OUTDATED
    assert started == []


def test_a_day_old_answer_is_served_at_once_and_refreshed_in_a_process_of_its_own(project, engine, monkeypatch):
    checking = dataclasses.replace(project, outdated_timeout_seconds=20)
    store_check(engine, OUTDATED, hours_ago=25)
    started = started_refreshes(monkeypatch)
    assert diagnostics.known_outdated(checking, engine) == OUTDATED  # the last answer, not waited for
    [(command, options)] = started
    assert command[-3:] == ["outdated", "--project-dir", str(project.project_dir)]
    assert command[-4].endswith("diagnostics.py")
    assert pathlib.Path(command[-4]).is_file()  # the command itself, wherever the library lives
    assert options["start_new_session"]
    assert options["env"]["DATABASE_URL"] == project.database_url


def test_an_unanswered_check_is_tried_again_after_an_hour_and_keeps_the_last_answer(project, engine, monkeypatch):
    checking = dataclasses.replace(project, outdated_timeout_seconds=20)
    store_check(engine, OUTDATED, hours_ago=30)
    store_check(engine, None, hours_ago=0.5, error="pip gave no answer within 20 s")
    started = started_refreshes(monkeypatch)
    assert diagnostics.known_outdated(checking, engine) == OUTDATED
    assert started == []
    store_check(engine, None, hours_ago=1.5, error="pip gave no answer within 20 s")
    assert diagnostics.known_outdated(checking, engine) == OUTDATED
    assert len(started) == 1


def test_no_check_when_turned_off(project, engine, monkeypatch):
    db.ensure_schema(engine)
    started = started_refreshes(monkeypatch)
    assert diagnostics.known_outdated(project, engine) == []  # outdated_timeout_seconds 0 in test projects
    assert started == []
    assert diagnostics.refresh_outdated(project, engine) is None


def test_the_refresh_stores_pips_answer_or_why_it_had_none(project, engine, monkeypatch):
    checking = dataclasses.replace(project, outdated_timeout_seconds=20)
    db.ensure_schema(engine)
    (project.project_dir / "requirements.txt").write_text("flask\n")
    fake_pip(monkeypatch, [{"name": "Flask", "version": "3.0.0", "latest_version": "3.1.3"}])
    assert diagnostics.refresh_outdated(checking, engine) == [{"package": "Flask", "installed": "3.0.0", "latest": "3.1.3"}]
    impatient = dataclasses.replace(checking, outdated_timeout_seconds=0.01)
    monkeypatch.undo()
    assert diagnostics.refresh_outdated(impatient, engine) is None  # pip cannot even start in 10 ms
    with engine.connect() as conn:
        latest, answered = db.latest_package_checks(conn)
    assert not latest.ok
    assert "no answer within" in latest.error
    assert json.loads(answered.packages) == [{"package": "Flask", "installed": "3.0.0", "latest": "3.1.3"}]


def test_python_diagnostics_outdated_stores_its_answer(project, engine, monkeypatch):
    """The command a tick starts in the background, run for real (pip cannot answer in 10 ms)."""
    path = project.project_dir / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "outdated_timeout_seconds": 0.01}))
    monkeypatch.setenv("DATABASE_URL", project.database_url)
    db.ensure_schema(engine)
    assert diagnostics_command.main(["outdated", "--project-dir", str(project.project_dir)]) == 0
    with engine.connect() as conn:
        latest, answered = db.latest_package_checks(conn)
    assert latest is not None
    assert not latest.ok
    assert answered is None
