"""Validation, the hash split and merging, on small frames and files."""

import pandas as pd
import pytest
from conftest import store_rows, stored_frames

import datagen
from riskmonitor.data import datasets, ingest, rows, sources
from riskmonitor.store import db

HEADER = b"corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\n"


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty file"),
    (b"\n\n", "empty file"),
    (HEADER, "no data rows (header only)"),
    (b"corporation,lastmonth_activity,lastyear_activity,number_of_employees\nab,1,2,3\n", "missing column(s): exited"),
    (HEADER + b"ab,1,2,3,0\ncd,lots,2,3,1\n", "non-numeric or infinite value 'lots' in column lastmonth_activity (line 3)"),
    (HEADER + b"ab,1,2,3,0\ncd,1,2,3,2\n", "label exited must be 0 or 1, found 2"),
    (HEADER + b"ab,1,2,3,0\ncd,inf,2,3,1\n", "non-numeric or infinite value 'inf' in column lastmonth_activity (line 3)"),
    (HEADER + b"ab,1,1e400,3,0\n", "non-numeric or infinite value"),
    (HEADER + b"ab,1,2,3,\n", "label exited must be 0 or 1"),
    (bytes(range(256)) * 4, "not UTF-8 text"),
    ("corporation;lastmonth_activity\nab;1\n".encode("utf-16"), "not UTF-8 text"),
    (HEADER + b'ab,1,2,3,0\n"cd,1,2,3,1\n', "not a valid CSV file"),
])
def test_unusable_files_are_refused_with_the_reason(sqlite_project, data, reason):
    frame, error = ingest.read_valid_rows(data, sqlite_project)
    assert frame is None
    assert error.startswith(reason)


@pytest.mark.parametrize("written", [b"1", b"1.0", b"1e0", b" 1 ", b'"1"', b"+1"])
def test_a_label_is_the_number_one_however_it_is_written(sqlite_project, written):
    """As the README says: a label is the number 0 or 1, written as any number is; stored as an integer."""
    frame, error = ingest.read_valid_rows(HEADER + b"ab,1,2,3,0.0\ncd,1,2,3," + written + b"\n", sqlite_project)
    assert error is None
    labels = frame.to_pandas()["exited"]
    assert labels.tolist() == [0, 1]
    assert str(labels.dtype) == "int64"


@pytest.mark.parametrize(("written", "found"), [(b"0.5", "0.5"), (b"-1", "-1"), (b"1.0000001", "1.0000001")])
def test_a_label_that_is_not_0_or_1_is_refused(sqlite_project, written, found):
    frame, error = ingest.read_valid_rows(HEADER + b"ab,1,2,3,0\ncd,1,2,3," + written + b"\n", sqlite_project)
    assert frame is None
    assert error == f"label exited must be 0 or 1, found {found} (line 3)"


def test_valid_file_keeps_the_configured_columns_in_order(sqlite_project):
    data = b"exited,extra,number_of_employees,lastyear_activity,lastmonth_activity,corporation\n1,x,3,2,1,ab\n"
    frame, error = ingest.read_valid_rows(b"\xef\xbb\xbf" + data, sqlite_project)  # a BOM is fine
    assert error is None
    frame = frame.to_pandas()  # read_valid_rows gives a pyarrow Table
    assert list(frame.columns) == list(sqlite_project.columns)
    assert frame.iloc[0].tolist() == ["ab", 1, 2, 3, 1]


def test_missing_feature_values_are_kept_for_the_imputer(sqlite_project):
    frame, error = ingest.read_valid_rows(HEADER + b"ab,,2,3,1\n", sqlite_project)
    assert error is None
    assert frame.to_pandas()["lastmonth_activity"].isna().tolist() == [True]


def test_held_out_rows_are_chosen_by_content_and_about_the_configured_share(sqlite_project):
    frame = datagen.generate(20_000, seed=5)
    held = rows.held_out(frame, sqlite_project)
    assert abs(held.mean() - sqlite_project.test_fraction) < 0.02
    shuffled = frame.sample(frac=1, random_state=1)
    assert (rows.held_out(shuffled, sqlite_project) == held[shuffled.index]).all()


def test_merge_removes_exact_duplicates_and_never_loses_a_row(sqlite_project):
    first, second = datagen.generate(500, seed=1), datagen.generate(300, seed=2)
    store_rows(sqlite_project, first)
    store_rows(sqlite_project, pd.concat([second, first.head(100)], ignore_index=True))
    final, test = stored_frames(sqlite_project)
    final_rows, test_rows = len(final), len(test)
    merged = pd.concat([pd.read_csv(sqlite_project.finaldata_csv, dtype={"corporation": str}),
                        pd.read_csv(sqlite_project.testdata_csv, dtype={"corporation": str})])  # the exports
    expected = pd.concat([first, second]).drop_duplicates()
    assert final_rows + test_rows == len(expected) == len(merged)
    key = list(sqlite_project.columns)
    assert merged.sort_values(key).to_numpy().tolist() == expected.sort_values(key).to_numpy().tolist()


def find(config, known: set[str]) -> list[sources.NewFile]:
    """The new files of the input folder (and uploads), as a tick finds them."""
    engine = db.make_engine(config.database_url)
    db.ensure_schema(engine)
    with engine.connect() as conn:
        return sources.find_new_files(config, conn, known, {})


def test_a_renamed_copy_is_not_new(sqlite_project):
    datagen.generate(50, seed=1).to_csv(sqlite_project.input_folder_path / "a.csv", index=False)
    found = find(sqlite_project, set())
    (sqlite_project.input_folder_path / "b.csv").write_bytes((sqlite_project.input_folder_path / "a.csv").read_bytes())
    assert [f.name for f in find(sqlite_project, set())] == ["a.csv"]
    assert find(sqlite_project, {found[0].sha256}) == []


def test_only_visible_csv_files_are_watched(sqlite_project):
    folder = sqlite_project.input_folder_path
    for name in ("notes.txt", ".partial.csv", "UPPER.CSV", "data.csv"):
        (folder / name).write_bytes(HEADER + name.encode() + b",1,2,3,0\n")
    assert [f.name for f in find(sqlite_project, set())] == ["UPPER.CSV", "data.csv"]


# --- hardening (issue 11): no value stalls ingestion, no row goes wrong silently ------------------

@pytest.mark.parametrize(("data", "reason"), [
    (HEADER + b"ab,1," + b"9" * 400 + b",3,0\n", "non-numeric or infinite value '999"),  # OverflowError in pandas
    (HEADER + b"ab,1,2,3,0,\ncd,4,5,6,1,\n", "line 2 has 6 fields, the header has 5"),  # trailing commas
    (HEADER + b"ab,1,2,3,0\ncd,4,5,6,1,7\n", "line 3 has 6 fields, the header has 5"),
    (HEADER + b"ab,True,2,3,0\n", "non-numeric or infinite value 'True' in column lastmonth_activity"),
    (HEADER + b"ab,1,2,3,True\n", "non-numeric or infinite value 'True' in column exited"),
    (HEADER + b"ab,1,2,3,False\n", "non-numeric or infinite value 'False' in column exited"),
    (HEADER.replace(b"exited", b"exited,exited") + b"ab,1,2,3,0,1\n", "column exited appears more than once"),
])
def test_values_pandas_cannot_convert_and_extra_fields_are_refused(sqlite_project, data, reason):
    frame, error = ingest.read_valid_rows(data, sqlite_project)
    assert frame is None
    assert error.startswith(reason), error


def test_ids_are_kept_exactly_as_written(sqlite_project):
    ids = ["00012", "NA", "null", "None", "N/A", "nan", "007.50", ""]
    data = HEADER + b"".join(f"{i},1,2,3,{n % 2}\n".encode() for n, i in enumerate(ids))
    table, error = ingest.read_valid_rows(data, sqlite_project)
    assert error is None
    frame = table.to_pandas()
    assert frame["corporation"].tolist()[:-1] == ids[:-1]
    assert frame["corporation"].isna().tolist() == [False] * 7 + [True]  # empty stays missing
    store_rows(sqlite_project, frame)
    stored = pd.concat(stored_frames(sqlite_project))
    assert sorted(stored["corporation"].dropna().tolist()) == sorted(ids[:-1])
    assert stored["corporation"].isna().sum() == 1


def test_a_huge_cell_is_echoed_as_a_short_excerpt(sqlite_project):
    frame, error = ingest.read_valid_rows(HEADER + b"ab," + b"x" * 5_000_000 + b",2,3,0\n", sqlite_project)
    assert frame is None
    assert error.startswith("non-numeric or infinite value 'xxx")
    assert len(error) < 300


@pytest.mark.parametrize("kind", ["fifo", "socket", "directory", "link to a fifo", "broken link"])
def test_only_regular_files_are_read(sqlite_project, kind, tmp_path, request):
    import os
    import socket

    folder = sqlite_project.input_folder_path
    path = folder / "x.csv"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        request.addfinalizer(server.close)
        server.bind(str(path))
    elif kind == "directory":
        path.mkdir()
    elif kind == "link to a fifo":
        os.mkfifo(tmp_path / "pipe")
        path.symlink_to(tmp_path / "pipe")
    else:
        path.symlink_to(tmp_path / "nothing-here")
    (folder / "good.csv").write_bytes(HEADER + b"ab,1,2,3,0\n")
    found = find(sqlite_project, set())  # never opens x.csv: a FIFO would block
    assert [f.name for f in found] == ["good.csv", "x.csv"]
    engine = db.make_engine(sqlite_project.database_url)
    db.ensure_schema(engine)
    with engine.connect() as conn:
        result = ingest.ingest_files(sqlite_project, found, conn)
    records = {r["file"]: r for r in result.records}
    assert records["good.csv"]["status"] == "ingested"
    assert records["x.csv"]["status"] == "quarantined"
    assert records["x.csv"]["error"].startswith("not a regular file: ")
    again = find(sqlite_project, {f.sha256 for f in found})
    assert again == []  # recorded once by its name and kind, skipped while it stays


# --- a tick reads its new rows, not the history (issue 13) ------------------------------------------

def with_gaps(frame, seed):
    import numpy as np

    frame = frame.copy()
    frame.loc[np.random.default_rng(seed).random(len(frame)) < 0.1, "lastyear_activity"] = np.nan
    return frame


def test_the_running_statistics_are_those_of_the_training_rows(sqlite_project):
    config = sqlite_project
    for seed in range(4):  # four stores, duplicates among them
        store_rows(config, pd.concat([with_gaps(datagen.generate(700, seed=seed), seed),
                                      datagen.generate(50, seed=0)], ignore_index=True))
    engine = db.make_engine(config.database_url)
    final, test = stored_frames(config, engine)
    with engine.connect() as conn:
        state, stats = datasets.state(conn), datasets.stats(conn, config)
    assert (state.train_rows, state.test_rows) == (len(final), len(test))
    assert len(final) + len(test) == len(pd.concat([with_gaps(datagen.generate(700, seed=s), s) for s in range(4)]
                                                   + [datagen.generate(50, seed=0)]).drop_duplicates())
    for feature in config.features:
        f = stats["features"][feature]
        assert f["mean"] == pytest.approx(final[feature].mean(), rel=1e-12)
        assert (f["m2"] / (f["n"] - 1)) ** 0.5 == pytest.approx(final[feature].std(), rel=1e-12)
    assert stats["missing"] == {c: int(final[c].isna().sum()) for c in config.columns}


def test_a_tick_that_does_not_retrain_reads_no_history(project, engine, no_reports, monkeypatch):
    from conftest import add_csv

    from riskmonitor.pipeline.tick import run_tick

    add_csv(project, "first.csv", rows=2_000, seed=1)
    assert run_tick(project, engine).status == "deployed"
    reads = []
    original = datasets.read_lines
    monkeypatch.setattr(datasets, "read_lines", lambda conn, held_out, after_id=0:
                        reads.append(after_id) or original(conn, held_out, after_id))
    add_csv(project, "second.csv", rows=500, seed=2)
    tick = run_tick(project, engine)
    assert tick.status == "no_drift"
    assert all(after > 0 for after in reads)  # at most what was stored after the exports' marks: no history
    final, test = stored_frames(project, engine)
    assert len(pd.read_csv(project.finaldata_csv)) == len(final)  # the exports are up to date all the same
    assert len(pd.read_csv(project.testdata_csv)) == len(test)
    project.testdata_csv.unlink()
    assert run_tick(project, engine).status == "no_new_data"
    assert reads[-1] == 0  # a lost export is read whole again (the patch above sees every read)
    assert len(pd.read_csv(project.testdata_csv)) == len(test)


def test_new_rows_are_found_among_the_stored_ones(sqlite_project):
    config = sqlite_project
    store_rows(config, datagen.generate(1_000, seed=1))
    again = pd.concat([datagen.generate(1_000, seed=1).sample(300, random_state=2), datagen.generate(200, seed=3)])
    engine = db.make_engine(config.database_url)
    with engine.connect() as conn:
        new = datasets.new_rows(conn, [again, datagen.generate(1_000, seed=1).head(5)], config)
    assert new.counts == (len(datagen.generate(200, seed=3).drop_duplicates()), 0)
    assert len(new.table) == new.counts[0]


def test_row_hashes_stay_those_the_data_sets_were_stored_with(sqlite_project):
    """The hashes beside the data sets (and the held-out split) are persisted: they must not change when
    the code or pandas does. These values are what the first release of the hashes computed."""
    import numpy as np


    frame = pd.DataFrame({"corporation": pd.Series(["abc", None, "ünï€😀", "00012"], dtype="str"),
                          "lastmonth_activity": [1.0, np.nan, -0.0, 2.5], "lastyear_activity": [10, 20, 30, 40],
                          "number_of_employees": [3, 0, 7, 1], "exited": [0, 1, 1, 0]})
    expected = [[3660811267301654280, 4798959685166718886], [17712886069680227285, 13414134978786358656],
                [1905278369430167936, 1917018408495155653], [12698292485532035896, 8389041148313275338]]
    assert rows.row_hashes(frame, sqlite_project).tolist() == expected
    assert rows.row_hashes(frame.astype({"corporation": object}), sqlite_project).tolist() == expected
    # The first hash is pandas' own hash of the row (ids as text, features as floats): the split.
    key = frame.astype({c: "float64" for c in sqlite_project.features})
    assert rows.split_hash(frame, sqlite_project).tolist() == pd.util.hash_pandas_object(key, index=False).tolist()
