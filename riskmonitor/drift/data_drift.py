"""Data drift of new rows against the production model's training data (its saved reference), per
feature: the KS statistic beyond its sampling noise, and PSI over quantile bins."""

import logging
import math

from riskmonitor.config import Config
from riskmonitor.drift import episodes
from riskmonitor.store import db

log = logging.getLogger(__name__)
PSI_EPSILON = 1e-4  # share given to an empty bin, so that PSI stays finite
ROWS_PER_BIN = 20  # fewer PSI bins for small samples: sampling noise alone must stay far below the threshold


def population_stability_index(expected, actual, bins: int) -> float:
    """PSI of actual against expected, over quantile bins of expected plus one bin for missing values."""
    import numpy as np

    expected, actual = np.asarray(expected, dtype=float), np.asarray(actual, dtype=float)
    present = expected[~np.isnan(expected)]
    # Unique inner edges: skewed integer features (many zeros) have repeated quantiles. Values
    # below the reference's minimum or above its maximum get open-ended bins of their own, so a
    # shift past the reference's range counts even for a feature with few distinct values.
    edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])) if present.size else np.array([])
    if present.size:  # below the reference's minimum and above its maximum: bins of their own
        edges = np.unique(np.concatenate([[present.min()], edges, [np.nextafter(present.max(), np.inf)]]))
    p, q = _bin_shares(expected, edges), _bin_shares(actual, edges)
    return float(np.sum((q - p) * np.log(q / p)))


def _bin_shares(values, edges):
    import numpy as np

    missing = np.isnan(values)
    counts = np.bincount(np.searchsorted(edges, values[~missing], side="right"), minlength=edges.size + 1)
    shares = np.append(counts, missing.sum()) / max(values.size, 1)
    return np.maximum(shares, PSI_EPSILON)


def ks_critical_value(new_rows: int, reference_rows: int, confidence: float) -> float:
    """The KS D that two samples of one distribution exceed with probability 1 - confidence
    (the asymptotic two-sample bound; conservative for counts with ties)."""
    if not new_rows or not reference_rows:
        return math.inf
    c = math.sqrt(-math.log((1 - confidence) / 2) / 2)
    return c * math.sqrt((new_rows + reference_rows) / (new_rows * reference_rows))


def data_drift(new, reference, config: Config) -> list[dict]:
    """KS statistic, p-value and PSI of each feature of the new rows against the reference rows,
    and the verdict: PSI at least psi_threshold, or KS D at least ks_threshold and beyond the
    sampling noise of both sample sizes."""
    import numpy as np
    from scipy.stats import ks_2samp

    if len(new) == 0 or len(reference) == 0:
        return []
    # PSI of two samples of one distribution is about chi2(bins - 1) / n: 10 bins need a few
    # hundred rows to stay far below 0.2, so smaller samples are compared over fewer bins.
    bins = max(2, min(config.psi_bins, min(len(new), len(reference)) // ROWS_PER_BIN))
    rows = []
    for feature in config.features:
        actual, expected = (np.asarray(f[feature], dtype=float) for f in (new, reference))
        actual_present, expected_present = actual[~np.isnan(actual)], expected[~np.isnan(expected)]
        ks = ks_2samp(actual_present, expected_present) if actual_present.size and expected_present.size else None
        psi = population_stability_index(expected, actual, bins)
        # The verdict rests on effect sizes that do not grow with n, not on the KS p-value: a
        # p-value answers "are the distributions identical?", so at a million rows it flags trivial
        # shifts. KS D is the largest gap between the two CDFs (0 to 1, the same scale at any
        # size); it must also exceed what sampling noise gives at these sizes, so a small batch
        # does not raise an alarm. PSI catches what moves many quantiles at once.
        noise = ks_critical_value(actual_present.size, expected_present.size, config.data_drift_confidence)
        d = None if ks is None else float(ks.statistic)
        shifted = d is not None and d >= max(config.ks_threshold, noise)
        rows.append({"feature": feature, "statistic": d, "p_value": None if ks is None else float(ks.pvalue),
                     "psi": psi, "drifted": bool(psi >= config.psi_threshold or shifted)})
    return rows


def training_reference(engine, model_hex: str):
    """The data-drift reference of the production model: the training features saved with it (stored in
    the database by training.record_model: any host reads it), or, once a drift episode was acknowledged,
    those of the episode's rows (saved with the challenger that the acknowledging tick kept); None if
    there is none."""
    import gzip
    import io

    import pandas as pd

    with engine.connect() as conn:
        acknowledged = episodes.acknowledged(conn, model_hex)
        stored = db.artifact(conn, "reference", acknowledged.closed_hex if acknowledged else model_hex)
    if stored is None:
        log.warning("model %s has no training data reference in the database: data drift not computed", model_hex)
        return None
    try:  # gzipped CSV, read as text: nothing in it can run
        return pd.read_csv(io.BytesIO(gzip.decompress(stored.data)))
    except (OSError, EOFError, ValueError, pd.errors.ParserError) as exc:
        log.warning("model %s: its data-drift reference is not a gzipped CSV (%s): data drift not computed", model_hex,
                    type(exc).__name__)
        return None
