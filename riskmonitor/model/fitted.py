"""A trained model as plain numbers: the imputer's medians, the scaler's mean and scale, the logistic
regression's coefficients, intercept and classes. This JSON is what a model file and the database hold, and
what every process loads: it cannot run code, whoever wrote it. A pickle is never loaded (DESIGN.md); the
stored pickles of an earlier release are converted once, on a person's word that they are trusted
(`python dbsetup.py --convert-models --trust-stored-pickles`).

The predictions are scikit-learn's to the last bit: the very operations its Pipeline runs after its input
checks (tests/test_serving.py compares them)."""

import json
import math
from pathlib import Path

from riskmonitor.store import storage

FORMAT = "riskmonitor/logistic-pipeline/1"  # SimpleImputer(median) -> StandardScaler -> LogisticRegression
PICKLE_PROTOCOLS = tuple(bytes([0x80, n]) for n in range(2, 6))  # how a pickle of protocol 2 to 5 begins


class StoredPickle(storage.ModelIntegrityError):
    """Model bytes of an earlier release (a pickle): never loaded."""


class FittedModel:
    """A fitted SimpleImputer(median) -> StandardScaler -> binary LogisticRegression pipeline, as numbers."""

    def __init__(self, features, statistics, mean, scale, coef, intercept, classes):
        import numpy as np

        self.features = tuple(features)
        self.statistics = np.asarray(statistics, dtype=np.float64)
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.scale = None if scale is None else np.asarray(scale, dtype=np.float64)
        self.coef_t = np.asarray(coef, dtype=np.float64).reshape(1, -1).T
        self.intercept = np.asarray([intercept], dtype=np.float64)
        self.classes_ = np.asarray(classes)
        n = len(self.features)
        if not (self.statistics.shape == self.coef_t[:, 0].shape == (n,) and len(self.classes_) == 2
                and 1 in self.classes_.tolist() and all(x is None or x.shape == (n,) for x in (self.mean, self.scale))):
            raise ValueError("the fitted numbers do not fit together")
        self.positive = self.classes_.tolist().index(1)
        from scipy.special import expit

        self.expit = expit  # (an import statement per request costs a lookup)

    @classmethod
    def of(cls, pipeline) -> "FittedModel":
        """The numbers of a pipeline as training.train_model fits it; ValueError for any other model."""
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        kinds = [SimpleImputer, StandardScaler, LogisticRegression]
        if type(pipeline) is not Pipeline or [type(step) for _, step in pipeline.steps] != kinds:
            raise ValueError(f"not a model of this system: {type(pipeline).__name__}")
        imputer, scaler, regression = (step for _, step in pipeline.steps)
        if not (imputer.strategy == "median" and not imputer.add_indicator and isinstance(imputer.missing_values, float)
                and math.isnan(imputer.missing_values) and len(regression.classes_) == 2 and 1 in list(regression.classes_)):
            raise ValueError("not a model of this system: median imputation and labels 0 and 1 expected")
        return cls(getattr(imputer, "feature_names_in_", [f"x{i}" for i in range(imputer.n_features_in_)]),
                   imputer.statistics_, scaler.mean_ if scaler.with_mean else None,
                   scaler.scale_ if scaler.with_std else None, regression.coef_[0], float(regression.intercept_[0]),
                   regression.classes_.tolist())

    def to_bytes(self) -> bytes:
        """The JSON of the numbers (Python's float repr: each float read back exactly)."""
        def numbers(array):
            return None if array is None else [float(x) for x in array]

        return json.dumps({"format": FORMAT, "features": list(self.features), "imputer_medians": numbers(self.statistics),
                           "scaler_mean": numbers(self.mean), "scaler_scale": numbers(self.scale),
                           "coef": numbers(self.coef_t[:, 0]), "intercept": float(self.intercept[0]),
                           "classes": [int(c) for c in self.classes_]}, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes, what: str) -> "FittedModel":
        """The model of JSON bytes already verified; StoredPickle or ModelIntegrityError for anything else."""
        if data.startswith(PICKLE_PROTOCOLS):
            raise StoredPickle(f"{what} is a pickle of an earlier release, and pickles are never loaded: run "
                               "python dbsetup.py --convert-models --trust-stored-pickles if this database is "
                               "trusted, or retrain (fullprocess.py --force)")
        try:
            doc = json.loads(data)
            if doc.get("format") != FORMAT:
                raise ValueError(f"format {doc.get('format')!r}")
            return cls(doc["features"], doc["imputer_medians"], doc["scaler_mean"], doc["scaler_scale"], doc["coef"],
                       doc["intercept"], doc["classes"])
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise storage.ModelIntegrityError(f"{what} is not a model of this release ({exc})") from None

    def apply(self, matrix):
        """(labels, probabilities of label 1) of a float matrix, as Pipeline.predict and predict_proba compute them."""
        import numpy as np

        # Laid out as scikit-learn receives a frame's values (column-major): the product's rounding
        # depends on the layout, and the answers must be scikit-learn's to the last bit.
        matrix = np.asfortranarray(matrix, dtype=np.float64)
        matrix = np.where(np.isnan(matrix), self.statistics, matrix)  # SimpleImputer.transform
        if self.mean is not None:  # StandardScaler.transform
            matrix -= self.mean
        if self.scale is not None:
            matrix /= self.scale
        scores = (matrix @ self.coef_t + self.intercept).reshape(-1)  # LogisticRegression.decision_function
        labels = self.classes_[(scores > 0).astype(int)]
        probability = self.expit(scores)  # _predict_proba_lr: the positive class's column; the other is 1 - p
        return labels, (probability if self.positive == 1 else 1 - probability)

    def _matrix(self, rows):
        return rows[list(self.features)].to_numpy(dtype="float64") if hasattr(rows, "columns") else rows

    def predict(self, rows):
        """The labels of a frame (its feature columns) or a matrix, as scikit-learn's predict."""
        return self.apply(self._matrix(rows))[0]

    def predict_proba(self, rows):
        """Both columns of scikit-learn's predict_proba, in the order of classes_."""
        import numpy as np

        probability = self.apply(self._matrix(rows))[1]
        return np.column_stack([1 - probability, probability] if self.positive == 1 else [probability, 1 - probability])


def save(model: FittedModel, path: Path) -> str:
    """Write a model's numbers to path atomically; the sha256 of the file."""
    data = model.to_bytes()
    storage.replace_atomically(path, lambda handle: handle.write(data))
    return storage.sha256_bytes(data)


def load(path: Path, expected_sha256: str) -> FittedModel:
    """The model of a file, only if its bytes match the recorded sha256."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise storage.ModelIntegrityError(f"model file {Path(path).name} is missing") from exc
    except PermissionError as exc:
        raise storage.UnreadableFile(f"model file {Path(path).name} cannot be read by this user: check its permissions") from exc
    return from_verified(data, expected_sha256, f"model file {Path(path).name}")


def from_verified(data: bytes, expected_sha256: str, what: str) -> FittedModel:
    """The model of bytes (from a file or the database) that match the recorded sha256. The hash guards
    against corruption only (it sits in the same database): the format is what makes the bytes safe."""
    if storage.sha256_bytes(data) != expected_sha256:
        raise storage.ModelIntegrityError(f"{what} does not match its recorded sha256")
    return FittedModel.from_bytes(data, what)
