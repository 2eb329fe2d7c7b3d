"""Validation, the hash split and merging, on small frames and files."""

import pandas as pd
import pytest

import datagen
import ingestion

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
    frame, error = ingestion.read_valid_rows(data, sqlite_project)
    assert frame is None
    assert error.startswith(reason)


def test_valid_file_keeps_the_configured_columns_in_order(sqlite_project):
    data = b"exited,extra,number_of_employees,lastyear_activity,lastmonth_activity,corporation\n1,x,3,2,1,ab\n"
    frame, error = ingestion.read_valid_rows(b"\xef\xbb\xbf" + data, sqlite_project)  # a BOM is fine
    assert error is None
    assert list(frame.columns) == list(sqlite_project.columns)
    assert frame.iloc[0].tolist() == ["ab", 1, 2, 3, 1]


def test_missing_feature_values_are_kept_for_the_imputer(sqlite_project):
    frame, error = ingestion.read_valid_rows(HEADER + b"ab,,2,3,1\n", sqlite_project)
    assert error is None
    assert frame["lastmonth_activity"].isna().tolist() == [True]


def test_held_out_rows_are_chosen_by_content_and_about_the_configured_share(sqlite_project):
    frame = datagen.generate(20_000, seed=5)
    held = ingestion.held_out(frame, sqlite_project)
    assert abs(held.mean() - sqlite_project.test_fraction) < 0.02
    shuffled = frame.sample(frac=1, random_state=1)
    assert (ingestion.held_out(shuffled, sqlite_project) == held[shuffled.index]).all()


def test_merge_removes_exact_duplicates_and_never_loses_a_row(sqlite_project):
    first, second = datagen.generate(500, seed=1), datagen.generate(300, seed=2)
    ingestion.merge_rows(first, sqlite_project)
    final, test = ingestion.merge_rows(pd.concat([second, first.head(100)], ignore_index=True), sqlite_project)
    final_rows, test_rows = len(final), len(test)
    merged = pd.concat([ingestion.read_dataset(sqlite_project.finaldata_csv, sqlite_project),
                        ingestion.read_dataset(sqlite_project.testdata_csv, sqlite_project)])
    expected = pd.concat([first, second]).drop_duplicates()
    assert final_rows + test_rows == len(expected) == len(merged)
    key = list(sqlite_project.columns)
    assert merged.sort_values(key).to_numpy().tolist() == expected.sort_values(key).to_numpy().tolist()


def test_a_renamed_copy_is_not_new(sqlite_project):
    datagen.generate(50, seed=1).to_csv(sqlite_project.input_folder_path / "a.csv", index=False)
    found = ingestion.find_new_files(sqlite_project, set(), {})
    (sqlite_project.input_folder_path / "b.csv").write_bytes((sqlite_project.input_folder_path / "a.csv").read_bytes())
    assert [f.name for f in ingestion.find_new_files(sqlite_project, set(), {})] == ["a.csv"]
    assert ingestion.find_new_files(sqlite_project, {found[0].sha256}, {}) == []


def test_only_visible_csv_files_are_watched(sqlite_project):
    folder = sqlite_project.input_folder_path
    for name in ("notes.txt", ".partial.csv", "UPPER.CSV", "data.csv"):
        (folder / name).write_bytes(HEADER + name.encode() + b",1,2,3,0\n")
    assert [f.name for f in ingestion.find_new_files(sqlite_project, set(), {})] == ["UPPER.CSV", "data.csv"]
