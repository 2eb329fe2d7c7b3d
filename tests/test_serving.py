"""The prediction path's own arithmetic (serving.Applied) answers exactly what scikit-learn answers."""

import numpy as np
import pandas as pd
import pytest

import datagen
from riskmonitor.model import serving
from riskmonitor.model.training import train_model


def with_missing(frame, features, seed):
    rng = np.random.default_rng(seed)
    frame = frame.copy()
    for feature in features:
        frame.loc[rng.random(len(frame)) < 0.1, feature] = np.nan
    return frame


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_applied_answers_are_scikit_learns_bit_for_bit(sqlite_project, seed):
    config = sqlite_project
    features = list(config.features)
    model = train_model(with_missing(datagen.generate(5_000, seed=seed), features, seed), config)
    rows = with_missing(datagen.generate(3_000, seed=seed + 10, shift=3.0), features, seed + 10)
    rows = pd.concat([rows, pd.DataFrame({f: [0.0, -1e300, 1e300, np.nan] for f in features})], ignore_index=True)
    frame = rows[features].astype("float64")
    applied = serving.Applied.of(model)
    assert applied is not None
    expected_labels = model.predict(frame)
    expected = model.predict_proba(frame)[:, list(model.classes_).index(1)]
    for matrix in (frame.to_numpy(), np.ascontiguousarray(frame.to_numpy())):  # a CSV's frame, records
        labels, probabilities = applied(matrix)
        assert np.array_equal(labels, expected_labels)
        bad = np.flatnonzero(probabilities != expected)
        assert np.array_equal(probabilities, expected), (bad, probabilities[bad], expected[bad], matrix[bad])  # exactly
    one = frame.iloc[[5]]
    assert serving.predict(model, one.to_numpy(), config.features) == (
        [int(model.predict(one)[0])], [round(float(model.predict_proba(one)[0, 1]), 6)])


def test_any_other_model_is_asked_through_scikit_learn(sqlite_project):
    from sklearn.tree import DecisionTreeClassifier

    config = sqlite_project
    frame = datagen.generate(500, seed=1)
    tree = DecisionTreeClassifier(random_state=0).fit(frame[list(config.features)], frame[config.label])
    assert serving.Applied.of(tree) is None
    rows = frame[list(config.features)].head(20).astype("float64")
    labels, probabilities = serving.predict(tree, rows.to_numpy(), config.features)
    assert labels == [int(x) for x in tree.predict(rows)]
    assert probabilities == [round(float(p), 6) for p in tree.predict_proba(rows)[:, 1]]
