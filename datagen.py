"""Generate realistic churn data: skewed activity counts and a label that depends on them.

    python datagen.py --rows 5000 --seed 1 sourcedata/dataset1.csv
    python datagen.py --rows 2000 --seed 9 --flip 1.0 sourcedata/flipped.csv   # label noise
    python datagen.py --rows 2000 --seed 9 --shift 3 sourcedata/shifted.csv    # measurement drift
    python datagen.py --rows 2000 --seed 9 --scale lastmonth_activity=1.2 out.csv   # one feature scaled
    python datagen.py --rows 2000 --seed 9 --concept out.csv   # concept change: the rule flips for half
    python datagen.py --rows 2000 --seed 9 --rule bands out.csv   # a second label rule, of another shape
"""

import argparse
import string
import sys

import numpy as np
import pandas as pd

from riskmonitor.config import run_script

COLUMNS = ["corporation", "lastmonth_activity", "lastyear_activity", "number_of_employees", "exited"]
RULES = ("logistic", "bands")


def _logistic_rule(lastmonth, lastyear, employees, rng):
    """Low and falling activity and small headcount mean churn (a smooth logistic rule)."""
    trend = np.log1p(lastmonth) - np.log1p(lastyear / 12)
    logit = 3.0 - 0.9 * np.log1p(lastmonth) - 0.2 * np.log1p(employees) + 1.2 * -trend.clip(-3, 3)
    return (rng.random(lastmonth.size) < 1 / (1 + np.exp(-logit))).astype(np.int64)


def _bands_rule(lastmonth, lastyear, employees, rng):
    """A step rule logistic regression cannot represent exactly: churn is likely for clients
    using little per employee, and for the largest clients whatever their use (a U shape)."""
    per_employee = np.log1p(lastmonth) - 0.5 * np.log1p(employees)
    probability = np.where(per_employee < 0.6, 0.8, np.where(employees > 150, 0.55, 0.2))
    return (rng.random(lastmonth.size) < probability).astype(np.int64)


def generate(rows: int, seed: int = 0, shift: float = 1.0, flip: float = 0.0, rule: str = "logistic",
             scale: dict[str, float] | None = None, concept: bool = False) -> pd.DataFrame:
    """Churn data labelled by `rule`; then `flip` inverts that share of labels, `concept` inverts the
    labels of clients whose lastyear_activity is above its median, `shift` scales both activity
    columns and `scale` single columns ({column: factor}); changes to the features come after labelling."""
    rng = np.random.default_rng(seed)
    letters = np.array(list(string.ascii_lowercase))
    corporation = pd.Series(letters[rng.integers(0, 26, size=(rows, 4))].view("<U4").ravel())
    employees = np.floor(rng.lognormal(mean=3.4, sigma=1.4, size=rows)).astype(np.int64)
    # Activity is a gamma-Poisson count: heavy right tail, many small clients, some at zero.
    engagement = rng.gamma(shape=0.8, scale=1.0, size=rows)
    monthly_rate = engagement * (5 + 3 * np.sqrt(employees + 1))
    lastmonth = rng.poisson(monthly_rate)
    lastyear = rng.poisson(12 * monthly_rate * rng.gamma(4.0, 0.25, size=rows))
    exited = {"logistic": _logistic_rule, "bands": _bands_rule}[rule](lastmonth, lastyear, employees, rng)
    flipped = rng.random(rows) < flip
    if concept and rows:
        flipped |= lastyear > np.median(lastyear)
    exited[flipped] = 1 - exited[flipped]
    frame = pd.DataFrame({
        "corporation": corporation,
        "lastmonth_activity": np.round(lastmonth * shift).astype(np.int64),
        "lastyear_activity": np.round(lastyear * shift).astype(np.int64),
        "number_of_employees": employees,
        "exited": exited,
    }, columns=COLUMNS)
    for column, factor in (scale or {}).items():
        frame[column] = np.round(frame[column] * factor).astype(np.int64)
    return frame


def _scale_option(text: str) -> tuple[str, float]:
    column, _, factor = text.partition("=")
    if column not in COLUMNS[1:4] or not factor:
        raise argparse.ArgumentTypeError(f"expected FEATURE=FACTOR with a feature of {COLUMNS[1:4]}, not {text!r}")
    return column, float(factor)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", help="CSV file to write ('-' for standard output)")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shift", type=float, default=1.0, help="multiply the activity columns (default 1)")
    parser.add_argument("--flip", type=float, default=0.0, help="share of labels to invert, 0 to 1 (default 0)")
    parser.add_argument("--rule", choices=RULES, default="logistic", help="how labels follow the features")
    parser.add_argument("--scale", type=_scale_option, action="append", default=[], metavar="FEATURE=FACTOR",
                        help="multiply one feature (repeatable)")
    parser.add_argument("--concept", action="store_true",
                        help="invert the labels where lastyear_activity is above its median")
    args = parser.parse_args(argv)
    if args.rows < 0 or not 0 <= args.flip <= 1 or args.shift <= 0 or any(f <= 0 for _, f in args.scale):
        parser.error("--rows must be >= 0, --flip within 0..1, --shift and --scale factors > 0")
    frame = generate(args.rows, args.seed, args.shift, args.flip, args.rule, dict(args.scale), args.concept)
    frame.to_csv(sys.stdout if args.output == "-" else args.output, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
