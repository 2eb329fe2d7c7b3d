"""Training, scoring, the drift tests and verified model files."""

import dataclasses
import pickle

import pytest

import datagen
import storage
from scoring import detect_model_drift, score_model
from training import train_model


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


@pytest.mark.parametrize(("test", "new_f1", "earlier", "drifted"), [
    ("raw", 0.79, [0.80], True),
    ("raw", 0.80, [0.80], False),
    ("parametric", 0.77, [0.80, 0.82, 0.78, 0.80], False),  # mean 0.80, std 0.016: threshold 0.767
    ("parametric", 0.70, [0.80, 0.82, 0.78, 0.80], True),
    ("nonparametric", 0.785, [0.80, 0.82, 0.78, 0.80], False),  # Q1 0.795, IQR 0.01: threshold 0.78
    ("nonparametric", 0.77, [0.80, 0.82, 0.78, 0.80], True),
    ("parametric", 0.79, [0.80], True),  # one earlier score: no spread, the raw rule
])
def test_drift_tests(sqlite_project, test, new_f1, earlier, drifted):
    config = dataclasses.replace(sqlite_project, drift_test=test)
    drift = detect_model_drift(new_f1, 500, earlier[0], earlier, config)
    assert drift.drifted is drifted
    assert (drift.test, drift.new_f1, drift.new_rows, drift.reference_f1) == (test, new_f1, 500, earlier[0])
    assert (new_f1 < drift.threshold) is drifted


def test_a_tampered_model_file_is_never_unpickled(tmp_path):
    path = tmp_path / "model.pkl"
    sha = storage.save_model({"weights": [1, 2]}, path)
    assert storage.load_model(path, sha) == {"weights": [1, 2]}
    path.write_bytes(pickle.dumps({"weights": "evil"}))
    with pytest.raises(storage.ModelIntegrityError, match="does not match"):
        storage.load_model(path, sha)
    path.unlink()
    with pytest.raises(storage.ModelIntegrityError, match="missing"):
        storage.load_model(path, sha)
