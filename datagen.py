"""Generate realistic churn data: skewed activity counts and a label that depends on them.

    python datagen.py --rows 5000 --seed 1 sourcedata/dataset1.csv
    python datagen.py --rows 2000 --seed 9 --flip 1.0 sourcedata/flipped.csv   # concept drift
    python datagen.py --rows 2000 --seed 9 --shift 3 sourcedata/shifted.csv    # measurement drift
"""

import argparse
import string
import sys

import numpy as np
import pandas as pd

from config import run_script

COLUMNS = ["corporation", "lastmonth_activity", "lastyear_activity", "number_of_employees", "exited"]


def generate(rows: int, seed: int = 0, shift: float = 1.0, flip: float = 0.0) -> pd.DataFrame:
    """Churn data; `shift` scales the activity columns after labelling, `flip` inverts that share of labels."""
    rng = np.random.default_rng(seed)
    letters = np.array(list(string.ascii_lowercase))
    corporation = pd.Series(letters[rng.integers(0, 26, size=(rows, 4))].view("<U4").ravel())
    employees = np.floor(rng.lognormal(mean=3.4, sigma=1.4, size=rows)).astype(np.int64)
    # Activity is a gamma-Poisson count: heavy right tail, many small clients, some at zero.
    engagement = rng.gamma(shape=0.8, scale=1.0, size=rows)
    monthly_rate = engagement * (5 + 3 * np.sqrt(employees + 1))
    lastmonth = rng.poisson(monthly_rate)
    lastyear = rng.poisson(12 * monthly_rate * rng.gamma(4.0, 0.25, size=rows))
    # Low and falling activity and small headcount mean churn.
    trend = np.log1p(lastmonth) - np.log1p(lastyear / 12)
    logit = 3.0 - 0.9 * np.log1p(lastmonth) - 0.2 * np.log1p(employees) + 1.2 * -trend.clip(-3, 3)
    exited = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    flipped = rng.random(rows) < flip
    exited[flipped] = 1 - exited[flipped]
    return pd.DataFrame({
        "corporation": corporation,
        "lastmonth_activity": np.round(lastmonth * shift).astype(np.int64),
        "lastyear_activity": np.round(lastyear * shift).astype(np.int64),
        "number_of_employees": employees,
        "exited": exited,
    }, columns=COLUMNS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", help="CSV file to write ('-' for standard output)")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shift", type=float, default=1.0, help="multiply the activity columns (default 1)")
    parser.add_argument("--flip", type=float, default=0.0, help="share of labels to invert, 0 to 1 (default 0)")
    args = parser.parse_args(argv)
    if args.rows < 0 or not 0 <= args.flip <= 1 or args.shift <= 0:
        parser.error("--rows must be >= 0, --flip within 0..1 and --shift > 0")
    frame = generate(args.rows, args.seed, args.shift, args.flip)
    frame.to_csv(sys.stdout if args.output == "-" else args.output, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
