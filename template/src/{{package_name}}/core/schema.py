"""The feature contract: names, types and valid ranges, shared by every stage.

Training, the feature store, the service's request model and the drift check
all read this one list, so a feature is defined once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd

ENTITY = "customer_id"
TIMESTAMP = "event_timestamp"
LABEL = "churned"

ContractType = Literal["month-to-month", "one-year", "two-year"]
CONTRACT_TYPES: tuple[str, ...] = ("month-to-month", "one-year", "two-year")


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    dtype: Literal["int64", "float64", "string"]
    description: str
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] = ()
    # A typical value: the API's example, and what a test puts in a row it does not vary.
    # Left out, the first category or the middle of the range stands in.
    example: float | str | None = None

    @property
    def is_categorical(self) -> bool:
        return self.dtype == "string"

    @property
    def typical(self) -> float | str:
        if self.example is not None:
            return self.example
        if self.categories:
            return self.categories[0]
        middle = ((self.minimum or 0.0) + (self.maximum or 0.0)) / 2
        return round(middle) if self.dtype == "int64" else middle


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("tenure_months", "int64", "Months since the customer signed up", 0, 240),
    FeatureSpec("monthly_charges", "float64", "Current monthly bill", 0.0, 1000.0),
    FeatureSpec("support_tickets_90d", "int64", "Support tickets in the last 90 days", 0, 100),
    FeatureSpec("data_usage_gb", "float64", "Data used in the last 30 days (GB)", 0.0, 5000.0),
    FeatureSpec("contract_type", "string", "Contract term", categories=CONTRACT_TYPES),
)
FEATURE_NAMES: tuple[str, ...] = tuple(spec.name for spec in FEATURES)
NUMERIC_FEATURES: tuple[str, ...] = tuple(s.name for s in FEATURES if not s.is_categorical)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(s.name for s in FEATURES if s.is_categorical)


def example_row(**values: Any) -> dict[str, Any]:
    """A valid row of the contract from each feature's typical value, `values` replacing
    some: rows built this way need no edit when a feature is added."""
    unknown = sorted(set(values) - set(FEATURE_NAMES))
    if unknown:
        raise KeyError(f"not features of the contract: {', '.join(unknown)}")
    return {spec.name: values.get(spec.name, spec.typical) for spec in FEATURES}


class DataValidationError(ValueError):
    """Input data breaks the feature contract; the message lists every problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{source} failed validation:\n{listing}")


def validate_frame(
    frame: pd.DataFrame,
    source: str,
    *,
    require: tuple[str, ...] = (ENTITY, TIMESTAMP, *FEATURE_NAMES),
) -> pd.DataFrame:
    """Check columns, types, nulls, ranges and categories; raise one clear error."""
    import pandas as pd

    problems: list[str] = []
    missing = [column for column in require if column not in frame.columns]
    if missing:
        problems.append(f"missing columns: {', '.join(missing)}")
    if frame.empty:
        problems.append("no rows")
    for spec in FEATURES:
        if spec.name not in frame.columns or frame.empty:
            continue
        column = frame[spec.name]
        nulls = int(column.isna().sum())
        if nulls:
            problems.append(f"{spec.name}: {nulls} null value(s)")
        values = column.dropna()
        if spec.is_categorical:
            unknown = sorted(set(values.astype(str)) - set(spec.categories))
            if unknown:
                problems.append(
                    f"{spec.name}: unknown categories {unknown}; allowed {list(spec.categories)}"
                )
            continue
        if not pd.api.types.is_numeric_dtype(column):
            problems.append(f"{spec.name}: expected {spec.dtype}, got {column.dtype}")
            continue
        if spec.minimum is not None and (values < spec.minimum).any():
            problems.append(f"{spec.name}: values below {spec.minimum} (min {values.min()})")
        if spec.maximum is not None and (values > spec.maximum).any():
            problems.append(f"{spec.name}: values above {spec.maximum} (max {values.max()})")
    if LABEL in require and LABEL in frame.columns:
        labels = set(frame[LABEL].dropna().unique().tolist())
        if not labels <= {0, 1}:
            problems.append(f"{LABEL}: expected 0/1, got {sorted(labels)}")
        if frame[LABEL].isna().any():
            problems.append(f"{LABEL}: null value(s)")
    if TIMESTAMP in frame.columns and not pd.api.types.is_datetime64_any_dtype(frame[TIMESTAMP]):
        problems.append(f"{TIMESTAMP}: expected timestamps, got {frame[TIMESTAMP].dtype}")
    if problems:
        raise DataValidationError(source, problems)
    return frame
