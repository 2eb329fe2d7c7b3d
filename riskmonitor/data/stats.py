"""Column statistics of the data sets: mean, median and standard deviation of each feature, and the
share of missing values in every column, of a frame or of the data sets' running statistics."""

import math

from riskmonitor.config import Config


def _number(value) -> float | None:
    """A plain float for the database; NaN (no values to summarize) becomes NULL."""
    return None if value is None or math.isnan(value) else float(value)


def dataframe_summary(frame, config: Config) -> list[dict]:
    """Mean, median and standard deviation (pandas' sample std) of each feature."""
    return [{"feature": f, "mean": _number(frame[f].mean()), "median": _number(frame[f].median()),
             "std": _number(frame[f].std())} for f in config.features]


def missing_data(frame, config: Config) -> list[dict]:
    """Fraction (0 to 1) of missing values in every column: ids, features and label."""
    return [{"feature": c, "percentage": float(frame[c].isna().mean()) if len(frame) else 0.0} for c in config.columns]


def training_data(frame, config: Config) -> dict[str, list[dict]]:
    """Rows for db.record_diagnostics describing the data a model trains on: feature statistics and missing data."""
    return {"feature_stats": dataframe_summary(frame, config), "missing_data": missing_data(frame, config)}


def running_summary(stats: dict, config: Config, reference) -> dict[str, list[dict]]:
    """feature_stats and missing_data of all training rows from their running statistics (datasets.stats):
    mean, sample std and missing shares are exact; the median is the production model's training
    data's (its saved reference), None before the first model (a tick that trains replaces these
    rows with the exact statistics of what it read)."""
    features = []
    for feature in config.features:
        f = stats["features"][feature]
        median = None if reference is None else _number(reference[feature].median())
        features.append({"feature": feature, "mean": f["mean"] if f["n"] else None, "median": median,
                         "std": math.sqrt(f["m2"] / (f["n"] - 1)) if f["n"] > 1 else None})
    missing = [{"feature": c, "percentage": stats["missing"][c] / stats["rows"] if stats["rows"] else 0.0}
               for c in config.columns]
    return {"feature_stats": features, "missing_data": missing}

