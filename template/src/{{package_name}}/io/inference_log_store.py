"""What the inference log's stores share: its columns and tables, and the `Store` protocol.

The columns are the contract of every row the log holds (see `inference_log`);
`window_frame` gives each store's `read_window` answer the same types and order.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ..core.schema import ENTITY, FEATURE_NAMES, FEATURES, LABEL

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import pandas as pd

SERVED_AT = "served_at"
RECEIVED_AT = "received_at"
SCORED_AT = "scored_at"
VARIANT = "variant"
# Rows logged before canaries existed were all served by the champion.
DEFAULT_VARIANT = "champion"
PREDICTION_COLUMNS: tuple[str, ...] = (
    "request_id",
    SERVED_AT,
    "model_version",
    VARIANT,
    ENTITY,
    *FEATURE_NAMES,
    "probability",
    "prediction",
)
FEEDBACK_COLUMNS: tuple[str, ...] = ("request_id", LABEL, RECEIVED_AT)
SHADOW_COLUMNS: tuple[str, ...] = ("request_id", "shadow_version", "shadow_probability", SCORED_AT)
# What `read_window` adds to the prediction columns: the label and the shadow score, or NA.
JOINED_COLUMNS: tuple[str, ...] = (LABEL, "shadow_version", "shadow_probability")
PREDICTIONS_TABLE = "inference_log"
FEEDBACK_TABLE = "inference_feedback"
SHADOW_TABLE = "inference_shadow"

Kind = Literal["prediction", "feedback", "shadow"]
Row = dict[str, Any]

# Contract dtype -> the Python type a row holds.
_PYTHON_TYPES: dict[str, Callable[[Any], Any]] = {"int64": int, "float64": float, "string": str}


def new_request_id() -> str:
    """A fresh id for a served prediction: the client quotes it with the label."""
    return uuid.uuid4().hex


def prediction_row(
    *,
    model_version: str,
    features: Mapping[str, Any],
    probability: float,
    prediction: bool,
    customer_id: int | None = None,
    request_id: str | None = None,
    variant: str = DEFAULT_VARIANT,
) -> Row:
    """The log row of one served prediction (the features in contract types)."""
    row: Row = {
        "request_id": request_id or new_request_id(),
        SERVED_AT: datetime.now(UTC),
        "model_version": model_version,
        VARIANT: variant,
        ENTITY: None if customer_id is None else int(customer_id),
        "probability": float(probability),
        "prediction": bool(prediction),
    }
    for spec in FEATURES:
        row[spec.name] = _PYTHON_TYPES[spec.dtype](features[spec.name])
    return row


def feedback_row(request_id: str, label: bool) -> Row:
    """The log row of a label that arrived for `request_id`."""
    return {"request_id": request_id, LABEL: bool(label), RECEIVED_AT: datetime.now(UTC)}


def shadow_row(request_id: str, model_version: str, probability: float) -> Row:
    """The log row of the challenger's score for `request_id`, made in shadow mode."""
    return {
        "request_id": request_id,
        "shadow_version": model_version,
        "shadow_probability": float(probability),
        SCORED_AT: datetime.now(UTC),
    }


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive datetime is taken as UTC, like every timestamp the log writes."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Store(Protocol):
    """Where batches go and windows come from."""

    def write_predictions(self, rows: list[Row]) -> None: ...
    def write_feedback(self, rows: list[Row]) -> None: ...
    def write_shadow(self, rows: list[Row]) -> None: ...
    def read_window(self, start: datetime, end: datetime) -> pd.DataFrame: ...
    # Which of these predictions are stored (a journal's replay skips those).
    def logged_request_ids(self, request_ids: set[str]) -> set[str]: ...
    def count(self) -> int: ...
    def close(self) -> None: ...


def window_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Predictions joined with labels and shadow scores, in serving order and contract types."""
    import pandas as pd

    frame[SERVED_AT] = pd.to_datetime(frame[SERVED_AT], utc=True)
    frame[VARIANT] = frame[VARIANT].fillna(DEFAULT_VARIANT).astype(str)
    frame[ENTITY] = frame[ENTITY].astype("Int64")
    frame["prediction"] = frame["prediction"].astype(bool)
    frame[LABEL] = frame[LABEL].astype("boolean")
    frame["shadow_version"] = frame["shadow_version"].astype("string")
    frame["shadow_probability"] = frame["shadow_probability"].astype("Float64")
    return frame.sort_values(SERVED_AT, kind="stable").reset_index(drop=True)
