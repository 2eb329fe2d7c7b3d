"""Model drift: the configured test of the production model's F1 on its batches since deployment
(pooled by default, knowing its sampling error; the seed's raw, parametric and nonparametric), and
the gate: a challenger against the champion, paired on the same held-out rows."""

import dataclasses
import math
from dataclasses import dataclass

from riskmonitor.config import Config
from riskmonitor.model.scoring import Confusion, counts_of

# The pooled test: the latest batch, the last three, and all the batches it has (since deployment or an
# acknowledged episode; older batches outside any drift episode are pooled into the reference instead).
POOL_WINDOWS = (1, 3, None)


@dataclass(frozen=True)
class DriftVerdict:
    """What a model-drift test decided, and the numbers behind it."""

    drifted: bool
    test: str  # the test applied: the configured one, or the pooled test it fell back to
    f1: float  # the production model's F1 on the rows judged (this batch, or the batches pooled)
    rows: int
    threshold: float  # drift when f1 is below this
    reference_f1: float  # the production model's F1 on held-out rows when it was deployed
    rule: str  # how the threshold was set, and why this test (a fallback names its cause)
    std_error: float | None = None  # of the difference from the reference (the pooled test)

    def describe(self) -> str:
        verdict = "drift" if self.drifted else "no drift"
        return (f"{verdict}: F1 on new data {self.f1:.4f} ({self.rows} rows) vs {self.threshold:.4f} "
                f"({self.test}: {self.rule})")


def detect_model_drift(batches: list[Confusion], reference_f1: float, reference: Confusion | None,
                       config: Config) -> DriftVerdict:
    """Apply config.drift_test to the production model's counts on each batch since it was deployed
    (oldest first, this tick's last) against its F1 (and counts) on held-out rows when deployed."""
    latest = batches[-1]
    if not latest.informative:  # every F1 test would read 0 as a collapse
        return DriftVerdict(False, config.drift_test, latest.f1, latest.rows, 0.0, reference_f1,
                            "no row of this batch is positive, true or predicted: no evidence either way")
    if config.drift_test == "raw":
        return _verdict("raw", latest, reference_f1, reference_f1, "its F1 when deployed")
    if config.drift_test in ("parametric", "nonparametric"):
        earlier = [b.f1 for b in batches[:-1] if b.informative and 0.5 <= b.rows / latest.rows <= 2]
        threshold, rule = _spread_threshold(earlier, config)
        if threshold is not None:
            return _verdict(config.drift_test, latest, threshold, reference_f1, rule)
        return _pooled(batches, reference_f1, reference, config, f"{config.drift_test} fell back: {rule}")
    return _pooled(batches, reference_f1, reference, config, "")


def _verdict(test: str, counts: Confusion, threshold: float, reference_f1: float, rule: str) -> DriftVerdict:
    return DriftVerdict(counts.f1 < threshold, test, counts.f1, counts.rows, threshold, reference_f1, rule)


def _spread_threshold(earlier: list[float], config: Config) -> tuple[float | None, str]:
    """The (non)parametric threshold from earlier batch scores of comparable size; (None, why not)."""
    import numpy as np

    if len(earlier) < config.drift_min_earlier_scores:
        return None, (f"{len(earlier)} earlier score(s) of a comparable batch size (0.5x to 2x), "
                      f"fewer than {config.drift_min_earlier_scores}")
    if config.drift_test == "parametric":
        spread = float(np.std(earlier, ddof=1))
        threshold = float(np.mean(earlier)) - config.parametric_sigmas * spread
        rule = f"mean - {config.parametric_sigmas:g} std of {len(earlier)} earlier score(s)"
    else:
        q1, q3 = np.percentile(earlier, [25, 75])
        spread = float(q3 - q1)
        threshold = float(q1) - config.nonparametric_iqr_factor * spread
        rule = f"Q1 - {config.nonparametric_iqr_factor:g} IQR of {len(earlier)} earlier score(s)"
    return (threshold, rule) if spread > 0 else (None, "the earlier scores do not vary")


def _pooled(batches: list[Confusion], reference_f1: float, reference: Confusion | None, config: Config,
            fallback: str) -> DriftVerdict:
    """Drift when the F1 of the rows pooled over a window of recent batches is below the reference
    by more than z standard errors of both; the confidence is split over the windows (Bonferroni),
    so looking at three windows on every tick does not raise the false-alarm rate."""
    from statistics import NormalDist

    windows = sorted({len(batches) if w is None else min(w, len(batches)) for w in POOL_WINDOWS})
    z = NormalDist().inv_cdf(1 - (1 - config.drift_confidence) / len(windows))
    # Without counts (a model recorded before they were kept) the reference is taken to be as
    # uncertain as this batch's F1.
    reference_se = reference.f1_se if reference is not None else batches[-1].f1_se
    verdicts = []
    for window in windows:
        pooled = sum(batches[-window:], Confusion(0, 0, 0, 0))
        se = math.hypot(reference_se, pooled.f1_se)
        rule = (f"reference {reference_f1:.4f} - {z:.2f} x SE {se:.4f}, pooled over the last {window} of "
                f"{len(batches)} batch(es) since deployment")
        verdict = _verdict("pooled", pooled, reference_f1 - z * se, reference_f1, rule)
        verdicts.append(((pooled.f1 - reference_f1) / se, dataclasses.replace(verdict, std_error=se)))
    # The latest window that shows drift: the drift began no earlier than its first batch, so the episode and
    # the challenger's window hold no batch of the old regime that a longer window would add. Without drift,
    # the window with the strongest evidence of a fall.
    flagged = [verdict for _, verdict in verdicts if verdict.drifted]
    verdict = flagged[0] if flagged else min(verdicts, key=lambda pair: pair[0])[1]
    return dataclasses.replace(verdict, rule=f"{fallback}; {verdict.rule}") if fallback else verdict


@dataclass(frozen=True)
class GateVerdict:
    """The gate's paired comparison of challenger and champion on the same held-out rows."""

    deploy: bool
    rule: str  # non-inferiority (after a drift verdict) or superiority (without one)
    new: Confusion  # the challenger's counts on the rows
    old: Confusion  # the champion's
    difference: float  # F1 of the challenger minus F1 of the champion
    lower: float  # its one-sided lower confidence bound
    bar: float  # deploy when lower is above this: -margin, or 0

    def describe(self) -> str:
        decision = "deployed" if self.deploy else "kept"
        return (f"new model F1 {self.new.f1:.4f} vs production {self.old.f1:.4f} on {self.new.rows} recent held-out "
                f"rows: difference {self.difference:+.4f}, lower bound {self.lower:+.4f} vs {self.bar:+.4f} "
                f"({self.rule}): {decision}")


def paired_f1_difference(new_predicted, old_predicted, actual) -> tuple[float, float]:
    """F1(new) - F1(old) on the same rows and its standard error, by the delta method over the rows:
    each row's influence on one F1 is 2(fp+fn)/D^2 for a true positive, -2tp/D^2 for an error and 0
    for a true negative (D = 2tp+fp+fn); the variance of the difference is the sum of the squared
    differences of the two influences, so rows both models get right or wrong cancel out."""
    import numpy as np

    influences, scores = [], []
    for predicted in (new_predicted, old_predicted):
        predicted = np.asarray(predicted).astype(bool)
        tp, errors = np.sum(predicted & actual), np.sum(predicted != actual)
        denominator = float(2 * tp + errors)
        scores.append(2 * tp / denominator if denominator else 0.0)
        influence = np.where(predicted & actual, 2 * errors, np.where(predicted != actual, -2 * tp, 0))
        influences.append(influence / denominator**2 if denominator else np.zeros(actual.size))
    return float(scores[0] - scores[1]), float(np.sqrt(np.sum((influences[0] - influences[1]) ** 2)))


def gate(new_model, old_model, frame, config: Config, after_drift: bool) -> GateVerdict:
    """Deploy the challenger after a drift verdict (in a drift episode: model or data drift) unless it is
    worse than the champion by more than gate_margin (non-inferiority: a stale model keeps no place by a
    tie); without one only if it is better by more than the sampling error allows (superiority: equivalent
    models are not swapped)."""
    from statistics import NormalDist

    actual = frame[config.label].to_numpy().astype(bool)
    new_predicted, old_predicted = (m.predict(frame[list(config.features)]) for m in (new_model, old_model))
    new, old = counts_of(new_predicted, actual), counts_of(old_predicted, actual)
    difference, se = paired_f1_difference(new_predicted, old_predicted, actual)
    lower = difference - NormalDist().inv_cdf(config.gate_confidence) * se
    bar = -config.gate_margin if after_drift else 0.0
    rule = (f"non-inferiority after drift, margin {config.gate_margin:g}" if after_drift
            else "superiority without a drift verdict")
    return GateVerdict(bool(lower > bar), f"{rule}, {config.gate_confidence:g} confidence", new, old, difference, lower, bar)

