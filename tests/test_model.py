"""Training, scoring, the drift tests and verified model files."""

import dataclasses

import numpy as np
import pytest

import datagen
from riskmonitor.drift.model_drift import detect_model_drift, gate, paired_f1_difference
from riskmonitor.model.scoring import Confusion, confusion, counts_of, score_model
from riskmonitor.model.training import train_model


def test_trained_model_beats_chance_on_fresh_data(sqlite_project):
    model = train_model(datagen.generate(3000, seed=1), sqlite_project)
    assert score_model(model, datagen.generate(1000, seed=2), sqlite_project) > 0.7


def test_flipped_labels_ruin_the_score(sqlite_project):
    model = train_model(datagen.generate(3000, seed=1), sqlite_project)
    assert score_model(model, datagen.generate(1000, seed=2, flip=1.0), sqlite_project) < 0.45


def test_training_on_one_class_says_why(sqlite_project):
    frame = datagen.generate(50, seed=1).assign(exited=0)
    with pytest.raises(ValueError, match="needs both values of exited"):
        train_model(frame, sqlite_project)


def counts_with_f1(f1: float, rows: int, positives: float = 0.5) -> Confusion:
    """Confusion counts of `rows` rows whose F1 is about f1 (precision = recall)."""
    actual = round(rows * positives)
    tp = round(f1 * actual)
    return Confusion(tp, actual - tp, actual - tp, rows - 2 * actual + tp)


def test_confusion_counts_give_sklearns_f1(sqlite_project):
    from sklearn.metrics import f1_score

    model = train_model(datagen.generate(3000, seed=1), sqlite_project)
    frame = datagen.generate(500, seed=2, flip=0.2)
    counts = confusion(model, frame, sqlite_project)
    assert counts.rows == 500
    assert counts.f1 == pytest.approx(f1_score(frame["exited"], model.predict(frame[list(sqlite_project.features)])))
    assert counts + counts == Confusion(2 * counts.tp, 2 * counts.fp, 2 * counts.fn, 2 * counts.tn)


def test_the_standard_error_of_f1_matches_its_spread_over_samples(sqlite_project):
    model = train_model(datagen.generate(3000, seed=1), sqlite_project)
    samples = [confusion(model, datagen.generate(400, seed=seed), sqlite_project) for seed in range(200)]
    spread = np.std([c.f1 for c in samples], ddof=1)
    assert np.mean([c.f1_se for c in samples]) == pytest.approx(spread, rel=0.2)
    assert Confusion(100, 0, 0, 100).f1_se > 0  # a perfect score on 200 rows is not a certainty
    assert Confusion(0, 50, 50, 100).f1_se > 0


REFERENCE = counts_with_f1(0.75, 2000)  # the production model's counts on held-out rows when deployed


@pytest.mark.parametrize(("test", "batches", "drifted", "applied"), [
    # pooled: a fall larger than the sampling error of both scores, at 99% confidence
    ("pooled", [counts_with_f1(0.70, 200)], False, "pooled"),  # SE about 0.035: within the noise
    ("pooled", [counts_with_f1(0.55, 200)], True, "pooled"),
    ("pooled", [counts_with_f1(0.73, 20_000)], False, "pooled"),  # the reference's own error counts
    ("pooled", [counts_with_f1(0.68, 200)] * 30, True, "pooled"),  # evidence pooled since deployment
    ("pooled", [counts_with_f1(0.75, 200)] * 30 + [counts_with_f1(0.55, 200)], True, "pooled"),  # not diluted
    ("pooled", [Confusion(0, 0, 0, 200)], False, "pooled"),  # no positive row: no evidence
    ("raw", [counts_with_f1(0.74, 20_000)], True, "raw"),  # below the reference, whatever the noise
    ("raw", [counts_with_f1(0.76, 200)], False, "raw"),
    # (non)parametric: earlier batch scores of a comparable size set the threshold
    ("parametric", [counts_with_f1(f, 2000) for f in (0.74, 0.75, 0.76, 0.75, 0.74, 0.735)], False, "parametric"),  # 0.731
    ("parametric", [counts_with_f1(f, 2000) for f in (0.74, 0.75, 0.76, 0.75, 0.74, 0.70)], True, "parametric"),
    ("nonparametric", [counts_with_f1(f, 2000) for f in (0.74, 0.75, 0.76, 0.75, 0.74, 0.725)], False, "nonparametric"),
    ("nonparametric", [counts_with_f1(f, 2000) for f in (0.74, 0.75, 0.76, 0.75, 0.74, 0.71)], True, "nonparametric"),
    # ... and fall back to the pooled test without enough of them, or when they do not vary
    ("parametric", [counts_with_f1(0.76, 2000), counts_with_f1(0.745, 2000)], False, "pooled"),
    ("parametric", [counts_with_f1(0.75, 20_000)] * 5 + [counts_with_f1(0.74, 200)], False, "pooled"),
    ("nonparametric", [counts_with_f1(0.75, 2000)] * 6, False, "pooled"),
])
def test_drift_tests(sqlite_project, test, batches, drifted, applied):
    config = dataclasses.replace(sqlite_project, drift_test=test)
    verdict = detect_model_drift(batches, REFERENCE.f1, REFERENCE, config)
    assert verdict.drifted is drifted, verdict.describe()
    assert verdict.test == applied
    assert verdict.describe().startswith("drift:" if drifted else "no drift:")
    if applied != test:
        assert f"{test} fell back" in verdict.rule


def test_a_reference_without_counts_is_taken_as_uncertain_as_the_batch(sqlite_project):
    precise = counts_with_f1(0.75, 50_000)  # a reference this large is almost exact
    batch = counts_with_f1(0.72, 2000)
    assert detect_model_drift([batch], precise.f1, precise, sqlite_project).drifted
    assert not detect_model_drift([batch], precise.f1, None, sqlite_project).drifted


class Fixed:
    """A stand-in model with fixed predictions (the gate only calls predict)."""

    def __init__(self, predicted):
        self.predicted = np.asarray(predicted)

    def predict(self, features):
        return self.predicted


def test_the_paired_difference_cancels_rows_both_models_agree_on():
    actual = np.array([1, 1, 0, 0] * 50, dtype=bool)
    same, se = paired_f1_difference(actual, actual, actual)
    assert (same, se) == (0.0, 0.0)
    worse = actual.copy()
    worse[:20] = ~worse[:20]
    difference, se = paired_f1_difference(actual, worse, actual)
    assert difference == pytest.approx(1 - Confusion(90, 10, 10, 90).f1)
    assert se == pytest.approx(Confusion(90, 10, 10, 90).f1_se)  # against a perfect model: the other's own error
    worst = actual.copy()
    worst[:30] = ~worst[:30]  # wrong on the same 20 rows, and 10 more
    a, b = counts_of(worse, actual), counts_of(worst, actual)
    difference, se = paired_f1_difference(worse, worst, actual)
    assert difference == pytest.approx(a.f1 - b.f1)
    assert 0 < se < 0.5 * np.hypot(a.f1_se, b.f1_se)  # the rows both get wrong or right cancel


@pytest.mark.parametrize(("wrong_new", "wrong_old", "after_drift", "deploy"), [
    (40, 40, False, False),  # a tie without drift: production stays
    (40, 40, True, True),  # a tie after drift: the stale model does not keep its place
    (48, 40, True, False),  # clearly worse than the margin allows after drift
    (20, 40, False, True),  # clearly better: superiority
    (38, 40, False, False),  # a little better, within the sampling error
])
def test_the_gate(sqlite_project, wrong_new, wrong_old, after_drift, deploy):
    frame = datagen.generate(400, seed=1)
    actual = frame["exited"].to_numpy()
    rng = np.random.default_rng(0)
    errors = rng.permutation(400)
    new, old = actual.copy(), actual.copy()
    new[errors[:wrong_new]] ^= 1
    old[errors[:wrong_old]] ^= 1  # the same rows first: the models mostly agree
    verdict = gate(Fixed(new), Fixed(old), frame, sqlite_project, after_drift)
    assert verdict.deploy is deploy, verdict.describe()
    assert verdict.bar == (-sqlite_project.gate_margin if after_drift else 0.0)
