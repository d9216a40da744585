"""A synthetic churn dataset: replace this module with your real sources.

It is deterministic (seeded), carries a real signal (so the quality gate means
something), has monthly feature snapshots (so point-in-time joins matter) and
comes with a drifted variant (so monitoring has something to find).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .schema import ENTITY, FEATURE_NAMES, LABEL, TIMESTAMP

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# Fixed so that every run, on every machine, produces the same data.
START_TIME = datetime(2025, 7, 1, tzinfo=UTC)
SNAPSHOT_EVERY = timedelta(days=30)
SNAPSHOTS = 6
# Features a drifted batch shifts; the others keep their training distribution.
DRIFTED_FEATURES: tuple[str, ...] = ("monthly_charges", "support_tickets_90d", "contract_type")


@dataclass(frozen=True)
class ChurnData:
    """Monthly feature snapshots per customer, and one churn label per customer."""

    features: pd.DataFrame
    labels: pd.DataFrame


def generate(n_customers: int, seed: int, first_id: int = 1000) -> ChurnData:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    ids = np.arange(first_id, first_id + n_customers, dtype="int64")
    contract = rng.choice(
        ["month-to-month", "one-year", "two-year"], size=n_customers, p=[0.55, 0.25, 0.20]
    )
    start_tenure = rng.integers(1, 72, size=n_customers)
    base_charges = np.where(contract == "month-to-month", 80.0, 60.0) + rng.normal(
        0, 18, n_customers
    )
    ticket_rate = rng.gamma(shape=1.5, scale=0.8, size=n_customers)
    usage_scale = rng.gamma(shape=2.0, scale=60.0, size=n_customers)

    snapshots = []
    for month in range(SNAPSHOTS):
        snapshots.append(
            pd.DataFrame(
                {
                    ENTITY: ids,
                    TIMESTAMP: START_TIME + month * SNAPSHOT_EVERY,
                    "tenure_months": (start_tenure + month).astype("int64"),
                    "monthly_charges": np.clip(
                        base_charges * (1 + 0.01 * month) + rng.normal(0, 4, n_customers),
                        5.0,
                        400.0,
                    ).round(2),
                    "support_tickets_90d": rng.poisson(ticket_rate).astype("int64"),
                    "data_usage_gb": np.clip(
                        usage_scale * rng.uniform(0.7, 1.3, n_customers), 0.0, 2000.0
                    ).round(1),
                    "contract_type": contract,
                }
            )
        )
    features = pd.concat(snapshots, ignore_index=True)

    # Each label is observed at a random time after the second snapshot; the
    # churn signal comes from the snapshot in force at that time, so a join
    # that leaks later snapshots would learn from the future.
    offsets = rng.uniform(1.0, (SNAPSHOTS - 1) * SNAPSHOT_EVERY.days, n_customers)
    label_times = pd.to_datetime(START_TIME) + pd.to_timedelta(offsets, unit="D")
    labels = pd.DataFrame({ENTITY: ids, TIMESTAMP: label_times})
    from .features import point_in_time_join

    joined = point_in_time_join(labels, features)
    probability = churn_probability(joined)
    joined[LABEL] = (rng.uniform(size=len(joined)) < probability).astype("int64")
    return ChurnData(features=features, labels=joined[[ENTITY, TIMESTAMP, LABEL]])


def churn_probability(rows: pd.DataFrame) -> np.ndarray:
    """The true churn probability of feature rows: the signal a model should learn."""
    import numpy as np

    contract_effect = rows["contract_type"].map(
        {"month-to-month": 1.5, "one-year": 0.0, "two-year": -1.6}
    )
    logit = (
        -1.6
        - 0.06 * rows["tenure_months"]
        + 0.05 * (rows["monthly_charges"] - 70.0)
        + 0.9 * rows["support_tickets_90d"]
        - 0.006 * rows["data_usage_gb"]
        + contract_effect
    )
    return np.asarray(1.0 / (1.0 + np.exp(-logit.to_numpy(dtype=float))))


def outcomes(batch: pd.DataFrame, seed: int) -> pd.Series:
    """What really happened to the customers of a served batch: the delayed labels
    a feedback pipeline would send (True = churned)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    churned = rng.uniform(size=len(batch)) < churn_probability(batch)
    return pd.Series(churned, index=batch.index, name=LABEL)


def inference_batch(n_rows: int, seed: int, *, drifted: bool = False) -> pd.DataFrame:
    """Feature rows as the service would see them; `drifted` shifts three features."""
    import numpy as np

    data = generate(n_rows, seed, first_id=900_000)
    from .features import point_in_time_join

    batch = point_in_time_join(data.labels[[ENTITY, TIMESTAMP]], data.features)
    batch = batch[[ENTITY, *FEATURE_NAMES]].reset_index(drop=True)
    if drifted:
        rng = np.random.default_rng(seed + 1)
        batch["monthly_charges"] = (batch["monthly_charges"] * 1.35 + 15.0).clip(upper=900.0)
        batch["support_tickets_90d"] += rng.poisson(3.0, len(batch)).astype("int64")
        switch = rng.uniform(size=len(batch)) < 0.6
        batch.loc[switch, "contract_type"] = "month-to-month"
    return batch
