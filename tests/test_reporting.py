"""Plots and PDF reports: written by every tick that ingests data, valid, and never a reason to
lose what the tick did."""

import os
import shutil
import subprocess
import sys

from conftest import OUTDATED, add_csv, copy_code, write_config
from PIL import Image
from pypdf import PdfReader

import fullprocess
from riskmonitor.config import PROJECT_DIR
from riskmonitor.drift import decisions
from riskmonitor.pipeline.tick import run_tick
from riskmonitor.reporting import plots, report
from riskmonitor.store import db

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
def plot_paths(config):
    return [config.static_path / name for name in plots.chart_files(config.features).values()]


def assert_valid_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path.name
    with Image.open(path) as image:
        image.verify()  # the whole file decodes
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= 600
        assert image.height >= 300


def pdf_text(path) -> str:
    reader = PdfReader(path)
    assert len(reader.pages) >= 2
    return "\n".join(page.extract_text() for page in reader.pages)


def test_ticks_that_ingest_data_leave_plots_and_a_report(project, engine, no_pip):
    add_csv(project, "a.csv", 3_000, seed=1)
    first = run_tick(project, engine)
    add_csv(project, "shifted.csv", 2_000, seed=2, shift=3, flip=1.0)  # data and model drift: the challenger learns it
    (project.input_folder_path / "broken & <odd> name.csv").write_text("not,a\nvalid,file\n")
    second = run_tick(project, engine)
    assert first.status == "deployed"
    assert second.status == "deployed"
    assert not second.report_error
    for path in plot_paths(project):
        assert_valid_png(path)
    for tick in (first, second):
        text = pdf_text(project.reports_path / f"report_{tick.hex}.pdf")
        assert tick.hex in text
        assert tick.status in text
    text = pdf_text(project.reports_path / f"report_{second.hex}.pdf")
    for expected in ("broken & <odd> name.csv", "missing column(s)", "lastmonth_activity", "drifted",
                     "Confusion matrix", "Missing data", "Step timings", OUTDATED[0]["package"], OUTDATED[0]["latest"]):
        assert expected in text.replace("\n", " "), expected


def test_the_drift_section_reads_the_record_whatever_the_summary_says(sqlite_project, no_pip, monkeypatch):
    monkeypatch.setattr(decisions, "summary", lambda ingest_text, decision: "Reworded: the summary says anything")
    engine = db.make_engine(sqlite_project.database_url)
    add_csv(sqlite_project, "a.csv", 2_000, seed=1)
    first = run_tick(sqlite_project, engine)
    add_csv(sqlite_project, "flipped.csv", 1_000, seed=5, flip=1.0)  # labels inverted: model drift
    tick = run_tick(sqlite_project, engine)
    with engine.connect() as conn:
        assert db.get_run(conn, tick.hex).message == "Reworded: the summary says anything"
    engine.dispose()
    text = pdf_text(sqlite_project.reports_path / f"report_{tick.hex}.pdf").replace("\n", " ")
    record = tick.decision
    assert "Model drift decision: drift;" in text
    assert f"vs threshold {record.drift_threshold:.4f}" in text
    assert f"F1 {record.new_f1:.4f} on {record.new_rows:,} new rows" in text
    assert f"{record.challenger_hex}: F1 {record.challenger_f1:.4f} vs {first.hex}" in text
    assert "fullprocess.py" in text
    assert "model drift" in text  # why it retrained
    assert f"drift episode #{record.episode}, {record.episode_outcome}; verdict {record.verdict}" in text
    assert f"lower confidence bound {record.difference_low:+.4f}" in text  # the gate's bound is one-sided


def test_a_tick_without_new_data_draws_nothing(sqlite_project, no_pip):
    engine = db.make_engine(sqlite_project.database_url)
    add_csv(sqlite_project, "a.csv", 1_000, seed=1)
    run_tick(sqlite_project, engine)
    written = {p: p.stat().st_mtime_ns for p in [*plot_paths(sqlite_project), *sqlite_project.reports_path.iterdir()]}
    idle = run_tick(sqlite_project, engine)
    assert idle.status == "no_new_data"
    assert {p: p.stat().st_mtime_ns for p in written} == written
    assert len(list(sqlite_project.reports_path.iterdir())) == 1
    engine.dispose()


def test_a_failed_report_keeps_what_the_tick_did_and_exits_non_zero(project, engine, no_pip, monkeypatch):
    drawn = []

    def fail(config, engine, run_hex):
        drawn.append(run_hex)
        raise OSError("No space left on device")

    monkeypatch.setattr(report, "write_report", fail)
    monkeypatch.setattr(fullprocess, "load_config", lambda: project)
    monkeypatch.setattr(fullprocess, "setup_logging", lambda: None)
    add_csv(project, "a.csv", 1_000, seed=1)
    assert fullprocess.main([]) == 1
    assert len(drawn) == 1
    with engine.connect() as conn:
        run = db.recent_runs(conn, 1)[0]
        assert db.production_model(conn).hex == run.hex
    assert run.status == "deployed"
    assert run.report_error == "OSError: No space left on device"
    assert "report failed" not in run.message  # the message is the tick's summary; the error has its column


def test_the_scripts_print_diagnostics_and_regenerate_the_report(tmp_path):
    """diagnostics.py and reporting.py as an operator runs them, in a copy of the project."""
    root = copy_code(tmp_path / "checkout")
    shutil.copytree(PROJECT_DIR / "sourcedata", root / "sourcedata")
    write_config(root, outdated_timeout_seconds=0)  # no wait on the network
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'scripts.db'}", "MPLBACKEND": "Agg"}

    def run(*args):
        return subprocess.run([sys.executable, *args], cwd="/", env=env, capture_output=True, text=True, timeout=300)

    for script, error in (("diagnostics.py", "no model is deployed yet"), ("reporting.py", "no tick has ingested")):
        early = run(str(root / script))
        assert early.returncode == 1, script
        assert error in early.stderr
        assert "Traceback" not in early.stderr
    tick_hex = run(str(root / "fullprocess.py")).stdout.split()[0]
    everything = run(str(root / "diagnostics.py"))
    assert everything.returncode == 0, everything.stderr
    for title in ("predictions of the production model", "feature statistics", "missing data", "step timings",
                  "outdated requirements", "data drift"):
        assert title in everything.stdout
    timing = run(str(root / "diagnostics.py"), "timing")
    assert timing.stdout.strip().splitlines()[0] == f"step timings of tick {tick_hex}"
    report = root / "reports" / f"report_{tick_hex}.pdf"
    report.unlink()
    again = run(str(root / "reporting.py"))
    assert again.returncode == 0, again.stderr
    assert tick_hex in pdf_text(report)


def test_the_pdf_lays_out_any_number_of_files_and_any_message(project, engine, no_pip):
    add_csv(project, "a.csv", 1_000, seed=1)
    (project.input_folder_path / "huge_cell.csv").write_text(
        "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\nab," + "x" * 2_000_000 + ",2,3,0\n")
    for n in range(60):
        (project.input_folder_path / f"bad_{n:02}_{'n' * 150}.csv").write_text(f"not,the,columns\n{n},2,3\n")
    tick = run_tick(project, engine)
    assert tick.status == "deployed"
    assert not tick.report_error
    text = pdf_text(project.reports_path / f"report_{tick.hex}.pdf").replace("\n", " ")
    assert "and 42 more" in text
    assert "/runs" in text


def test_the_confusion_matrix_is_brought_up_to_date_with_the_new_held_out_rows_only(sqlite_project, no_pip, monkeypatch):
    import json

    import pandas as pd
    from sklearn.metrics import confusion_matrix

    from riskmonitor.data import datasets
    from riskmonitor.model.scoring import load_production_model

    engine = db.make_engine(sqlite_project.database_url)

    def kept_and_recomputed():
        with engine.connect() as conn:
            kept = json.loads(db.artifact(conn, "confusion").data)
            _, model = load_production_model(conn, sqlite_project)
        test = pd.read_csv(sqlite_project.testdata_csv)
        full = confusion_matrix(test["exited"], model.predict(test[list(sqlite_project.features)]), labels=[0, 1])
        return kept, {"rows": len(test), "matrix": full.tolist()}

    reads = []
    read_lines = datasets.read_lines
    monkeypatch.setattr(datasets, "read_lines", lambda conn, held_out, after_id=0:
                        reads.append((held_out, after_id)) or read_lines(conn, held_out, after_id))
    add_csv(sqlite_project, "a.csv", 3_000, seed=1)
    assert run_tick(sqlite_project, engine).status == "deployed"
    assert (True, 0) in reads  # the first matrix of a model counts every held-out row
    for seed in (2, 3):  # same regime: no retrain, the kept matrix grows by the new held-out rows
        reads.clear()
        add_csv(sqlite_project, f"more{seed}.csv", 400, seed=seed)
        assert run_tick(sqlite_project, engine).status == "no_drift"
        kept, full = kept_and_recomputed()
        assert {"rows": kept["rows"], "matrix": kept["matrix"]} == full
        assert reads
        assert all(after > 0 for _, after in reads), reads  # nothing read from the start
    engine.dispose()
