"""The model and its metrics: plain scikit-learn, no I/O."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .schema import CATEGORICAL_FEATURES, FEATURE_NAMES, LABEL, NUMERIC_FEATURES

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sklearn.pipeline import Pipeline

NUMERIC_POSITIONS = [FEATURE_NAMES.index(name) for name in NUMERIC_FEATURES]
CATEGORICAL_POSITIONS = [FEATURE_NAMES.index(name) for name in CATEGORICAL_FEATURES]
DEFAULT_PARAMS: dict[str, float | int | str] = {
    "C": 1.0,
    "max_iter": 500,
    "class_weight": "balanced",
}


def to_matrix(frame: pd.DataFrame) -> np.ndarray:
    """Features in contract order as one object array, for scoring single rows fast.

    The pipeline is fitted on a DataFrame (so MLflow's pyfunc and `mlflow models
    serve` get named columns) but selects columns by position, so the service
    can skip building a DataFrame, which costs more than the model itself.
    scikit-learn then warns that X has no feature names: callers on that path
    filter exactly that warning (see `NO_FEATURE_NAMES_WARNING`).
    """
    return frame[list(FEATURE_NAMES)].to_numpy(dtype=object)


NO_FEATURE_NAMES_WARNING = "X does not have valid feature names"

# Probability at or above which a customer counts as churning: in evaluation, in
# what the service answers, and in how a rollout compares two models.
DECISION_THRESHOLD = 0.5


def build_pipeline(params: dict[str, float | int | str] | None = None, seed: int = 42) -> Pipeline:
    """Scaling and one-hot encoding in the pipeline, so serving gets raw features."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    preprocess = ColumnTransformer(
        [
            ("numeric", StandardScaler(), NUMERIC_POSITIONS),
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                CATEGORICAL_POSITIONS,
            ),
        ]
    )
    classifier = LogisticRegression(random_state=seed, **(params or DEFAULT_PARAMS))
    return Pipeline([("preprocess", preprocess), ("classifier", classifier)])


def split(frame: pd.DataFrame, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stratified split, so both sides keep the churn rate."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        frame, test_size=test_size, random_state=seed, stratify=frame[LABEL]
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


def evaluate(model: Pipeline, frame: pd.DataFrame) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    probability = model.predict_proba(frame[list(FEATURE_NAMES)])[:, 1]
    predicted = (probability >= DECISION_THRESHOLD).astype(int)
    return {
        "auc": float(roc_auc_score(frame[LABEL], probability)),
        "f1": float(f1_score(frame[LABEL], predicted)),
        "accuracy": float(accuracy_score(frame[LABEL], predicted)),
    }
