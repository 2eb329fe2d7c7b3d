"""Evidently's DataDriftPreset on reference and current CSV files, for bench/speed.py's part `tick`.

    bench/out/evidently-venv/bin/python bench/evidently_drift.py REF.csv [REF.csv ...] -- CUR.csv [CUR.csv ...]

Runs under the Evidently venv (bench/requirements-evidently.txt, Evidently 0.7's API), not the project's.
Compares the three features (lastmonth_activity, lastyear_activity, number_of_employees: numerical)
and the label exited (categorical), as a tick compares its new rows with its history (data drift on
the features; the label is what the model drift of a tick looks at). The whole result is written as
JSON to a temporary file, so nothing is left uncomputed; prints the number of drifted columns.
"""

import json
import sys
import tempfile

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

NUMERICAL = ["lastmonth_activity", "lastyear_activity", "number_of_employees"]
CATEGORICAL = ["exited"]


def read(paths: list[str]) -> Dataset:
    frame = pd.concat([pd.read_csv(path, usecols=NUMERICAL + CATEGORICAL) for path in paths], ignore_index=True)
    definition = DataDefinition(numerical_columns=NUMERICAL, categorical_columns=CATEGORICAL)
    return Dataset.from_pandas(frame, data_definition=definition)


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") in (0, len(argv) - 1):
        sys.exit(__doc__)
    split = argv.index("--")
    reference, current = read(argv[:split]), read(argv[split + 1:])
    snapshot = Report([DataDriftPreset()]).run(current, reference)
    with tempfile.NamedTemporaryFile("w+", suffix=".json") as out:
        snapshot.save_json(out.name)
        result = json.loads(out.read())
    drifted = next(m["value"] for m in result["metrics"] if m["metric_name"].startswith("DriftedColumnsCount"))
    print(f"drifted columns: {drifted['count']:.0f} of {len(NUMERICAL + CATEGORICAL)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
