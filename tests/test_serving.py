"""A model as plain numbers (fitted.FittedModel): its answers are exactly scikit-learn's, through a round trip
of its bytes, and nothing else is ever loaded as a model."""

import pickle

import numpy as np
import pandas as pd
import pytest

import datagen
from riskmonitor.model import fitted, serving
from riskmonitor.model.training import train_model
from riskmonitor.store import storage


def with_missing(frame, features, seed):
    rng = np.random.default_rng(seed)
    frame = frame.copy()
    for feature in features:
        frame.loc[rng.random(len(frame)) < 0.1, feature] = np.nan
    return frame


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_stored_numbers_answer_as_scikit_learn_bit_for_bit(sqlite_project, seed):
    config = sqlite_project
    features = list(config.features)
    pipeline = train_model(with_missing(datagen.generate(5_000, seed=seed), features, seed), config)
    rows = with_missing(datagen.generate(3_000, seed=seed + 10, shift=3.0), features, seed + 10)
    rows = pd.concat([rows, pd.DataFrame({f: [0.0, -1e300, 1e300, np.nan] for f in features})], ignore_index=True)
    frame = rows[features].astype("float64")
    data = fitted.FittedModel.of(pipeline).to_bytes()
    model = fitted.from_verified(data, storage.sha256_bytes(data), "model")  # what every process loads
    expected_labels = pipeline.predict(frame)
    expected = pipeline.predict_proba(frame)
    for matrix in (frame.to_numpy(), np.ascontiguousarray(frame.to_numpy())):  # a CSV's frame, records
        labels, probabilities = model.apply(matrix)
        assert np.array_equal(labels, expected_labels)
        bad = np.flatnonzero(probabilities != expected[:, 1])
        assert np.array_equal(probabilities, expected[:, 1]), (bad, probabilities[bad], expected[bad, 1], matrix[bad])
    assert np.array_equal(model.predict(rows), expected_labels)  # a frame: its feature columns, by name
    assert np.array_equal(model.predict_proba(rows), expected)
    one = frame.iloc[[5]]
    assert serving.predict(model, one.to_numpy()) == (
        [int(pipeline.predict(one)[0])], [round(float(pipeline.predict_proba(one)[0, 1]), 6)])


def test_any_other_model_is_refused_when_saved(sqlite_project):
    from sklearn.tree import DecisionTreeClassifier

    frame = datagen.generate(500, seed=1)
    tree = DecisionTreeClassifier(random_state=0).fit(frame[list(sqlite_project.features)], frame[sqlite_project.label])
    with pytest.raises(ValueError, match="not a model of this system: DecisionTreeClassifier"):
        fitted.FittedModel.of(tree)


class Payload:
    """Unpickling this creates the marker file: proof that a pickle was (or was not) loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return Path.touch, (self.marker,)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_a_pickle_with_its_own_hash_is_never_loaded(tmp_path, protocol):
    """The hash guards against corruption only: whoever writes the bytes can write their hash too."""
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Payload(probe)))
    assert probe.exists()  # the payload works: loading it would leave the marker
    marker = tmp_path / "unpickled"
    data = pickle.dumps(Payload(marker), protocol=protocol)
    path = tmp_path / "model.json"
    path.write_bytes(data)
    with pytest.raises(fitted.StoredPickle, match="pickles are never loaded: run python dbsetup.py --convert-models"):
        fitted.load(path, storage.sha256_bytes(data))
    with pytest.raises(storage.ModelIntegrityError, match="not a model of this release"):
        fitted.from_verified(b"{}", storage.sha256_bytes(b"{}"), "model")
    assert not marker.exists()


def test_a_tampered_or_missing_model_file_is_refused(sqlite_project, tmp_path):
    frame = datagen.generate(500, seed=1)
    model = fitted.FittedModel.of(train_model(frame, sqlite_project))
    path = tmp_path / "model.json"
    sha = fitted.save(model, path)
    assert fitted.load(path, sha).to_bytes() == model.to_bytes()
    path.write_bytes(path.read_bytes().replace(b'"intercept": ', b'"intercept": 1'))
    with pytest.raises(storage.ModelIntegrityError, match="does not match"):
        fitted.load(path, sha)
    path.unlink()
    with pytest.raises(storage.ModelIntegrityError, match="missing"):
        fitted.load(path, sha)
