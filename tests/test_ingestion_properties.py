"""Properties of a tick, whatever lands in the input folder (arbitrary bytes, arbitrary file names,
FIFOs and folders): it ends with a recorded status, the good file beside the rest is ingested, and
the data sets hold exactly the rows of the ingested files, each as written in its source."""

import csv
import io
import math
import os
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import make_project, offline
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datagen
from riskmonitor.data.validation import MISSING
from riskmonitor.pipeline.tick import run_tick
from riskmonitor.store import db

HEADER = "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited"
CELLS = st.one_of(
    st.integers(-5, 10**6).map(str), st.sampled_from(["", " 7", "0.5", "1e3", "NA", "null", "None", "N/A", "True",
                                                       "inf", "-", "9" * 400, "00012", '"1,2"', "x\ty"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\0"), max_size=8),
)
NUMBER = st.one_of(st.integers(-10**9, 10**9).map(str), st.decimals(-10**6, 10**6, places=3).map(str),
                   st.sampled_from(["", "NA", "null", " 5", "1e3"]))
ID = st.one_of(st.sampled_from(["", "00012", "NA", "null", "None", "N/A", "nan", '" a,b "', '"x""y"']),
               st.text(alphabet=st.characters(codec="utf-8", exclude_characters='\0\r\n",'), max_size=6))
VALID_ROW = st.tuples(ID, NUMBER, NUMBER, NUMBER, st.sampled_from(["0", "1", " 1", "0.0"])).map(",".join)
ROW = st.one_of(VALID_ROW, VALID_ROW, st.lists(CELLS, min_size=3, max_size=7).map(lambda cells: ",".join(cells)))
CSV_LIKE = st.lists(ROW, max_size=6).map(lambda rows: "\n".join([HEADER, *rows]) + "\n").map(str.encode)
VALID = st.lists(VALID_ROW, min_size=1, max_size=8).map(lambda rows: "\n".join([HEADER, *rows]) + "\n").map(str.encode)
CONTENT = st.one_of(st.binary(max_size=200), CSV_LIKE, VALID, VALID.map(lambda b: b.replace(b"\n", b"\r\n")))
NAME = st.binary(min_size=0, max_size=30).map(lambda b: b"z" + b.replace(b"/", b"_").replace(b"\0", b"_") + b".csv")
ENTRY = st.tuples(NAME, st.sampled_from(["file"] * 8 + ["fifo", "directory"]), CONTENT)


def source_rows(data: bytes) -> set[tuple]:
    """The rows of a CSV file as written, read without pandas: ids as text, numbers as floats."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig")), skipinitialspace=True))
    header, body = rows[0], [r for r in rows[1:] if r]
    index = [header.index(c) for c in HEADER.split(",")]
    return {row_key(*[row[i] if i < len(row) else "" for i in index]) for row in body}


def row_key(corporation, *numbers) -> tuple:
    values = [None if str(v).strip() in MISSING or (isinstance(v, float) and math.isnan(v)) else float(v)
              for v in numbers]
    return (None if corporation in ("", None) or corporation != corporation else str(corporation), *values)


def stored_rows(config) -> list[tuple]:
    import pandas as pd
    from conftest import stored_frames

    frame = pd.concat(stored_frames(config))  # the database's rows
    return [row_key(*row) for row in frame[list(config.columns)].itertuples(index=False)]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    offline(monkeypatch)  # no network and no plots: the property is about ingestion


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(ENTRY, max_size=5, unique_by=lambda e: e[0]), seed=st.integers(0, 10**6))
def test_any_input_folder_ends_in_a_recorded_tick_and_exact_rows(entries, seed):
    with tempfile.TemporaryDirectory() as tmp:
        config = make_project(Path(tmp) / "project", f"sqlite:///{tmp}/test.db")
        folder = os.fsencode(config.input_folder_path)
        for name, kind, data in entries:
            path = os.path.join(folder, name)
            if kind == "fifo":
                os.mkfifo(path)
            elif kind == "directory":
                os.mkdir(path)
            else:
                with open(path, "wb") as handle:
                    handle.write(data)
        datagen.generate(300, seed=seed).to_csv(config.input_folder_path / "good.csv", index=False)
        engine = db.make_engine(config.database_url)
        try:
            tick = run_tick(config, engine)
            with engine.connect() as conn:
                run = conn.execute(sa.select(db.runs)).one()
                records = conn.execute(sa.select(db.ingested_files)).all()
        finally:
            engine.dispose()
        assert (run.hex, run.status) == (tick.hex, "deployed")
        assert run.finished_at is not None
        assert {r.file: r.status for r in records}["good.csv"] == "ingested"
        ingested = [r for r in records if r.status == "ingested"]
        expected = set()
        for record in ingested:
            path = next(p for p in config.input_folder_path.iterdir()
                        if os.fsencode(p.name).decode("utf-8", "backslashreplace") == record.file)
            expected |= source_rows(path.read_bytes())
        stored = stored_rows(config)
        assert len(stored) == len(set(stored)) == sum(r.rows for r in ingested)
        assert set(stored) == expected


COLUMNS = (("corporation",), ("lastmonth_activity", "lastyear_activity", "number_of_employees"), "exited")


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(CSV_LIKE, VALID, VALID.map(lambda b: b.replace(b"\n", b"\r\n")), VALID.map(lambda b: b"\xef\xbb\xbf" + b),
                      st.lists(st.tuples(st.text(alphabet="abcxyz", max_size=4), *[st.integers(-10**6, 10**6)] * 3,
                                         st.integers(0, 1)), min_size=1, max_size=6).map(
                          lambda rows: "\n".join([HEADER, *(",".join(map(str, r)) for r in rows)]).encode())))
def test_the_fast_reader_gives_exactly_the_checked_rows_or_leaves_the_file_to_them(data):
    """pyarrow reads what it can (plain_rows) and the pandas path everything else: the same rows either way."""
    import pandas as pd

    from riskmonitor.data.validation import InvalidData, checked_rows, plain_rows

    plain = plain_rows(data, *COLUMNS)
    try:
        checked = checked_rows(data, *COLUMNS)
    except InvalidData:
        checked = None  # refused: the fast reader must not have taken it
    if plain is not None:
        assert checked is not None, "the fast reader took a file the checks refuse"
        pd.testing.assert_frame_equal(plain, checked)


def test_generated_files_take_the_fast_reader_even_with_missing_cells_and_windows_line_ends():
    from riskmonitor.data.validation import plain_rows

    frame = datagen.generate(500, seed=3)
    frame.loc[::7, "lastyear_activity"] = None
    frame.loc[::11, "corporation"] = None
    data = frame.to_csv(index=False).encode()
    for variant in (data, data.replace(b"\n", b"\r\n"), b"\xef\xbb\xbf" + data):
        rows = plain_rows(variant, *COLUMNS)
        assert rows is not None
        assert rows["lastyear_activity"].isna().sum() == len(frame.loc[::7])
        assert rows["corporation"].isna().sum() == len(frame.loc[::11])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=40)), min_size=1, max_size=60), st.integers(0, 5),
       st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0]), min_size=1, max_size=60))
def test_row_hashes_without_pandas_are_pandas_hashes(texts, offset, floats):
    """rowhash computes pandas' hash_array with numpy over Arrow buffers (ingestion imports no pandas): for
    any text (empty, missing, non-ASCII, any length, a sliced array) and any float (NaN, -0.0, inf), the
    same values as pandas, with pandas' key and the data sets' second key."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from riskmonitor.data import rowhash

    array = pa.array(["pad"] * offset + texts, pa.string()).slice(offset)
    values = np.array([t if t is not None else np.nan for t in texts], dtype=object)
    missing = pd.isna(values)
    for key in (rowhash.PANDAS_KEY, b"drat-row-hash-2!"):
        expected = pd.util.hash_array(np.where(missing, "", values), hash_key=key.decode(), categorize=False)
        assert rowhash.text(array, key, missing_as_empty=True).tolist() == expected.tolist()
        expected[missing] = np.iinfo(np.uint64).max
        assert rowhash.text(array, key).tolist() == expected.tolist()
    numbers = np.array(floats)
    assert rowhash.numbers(numbers).tolist() == pd.util.hash_array(numbers, categorize=False).tolist()
    whole = np.arange(len(floats), dtype=np.int64) - 3
    assert rowhash.numbers(whole).tolist() == pd.util.hash_array(whole, categorize=False).tolist()
