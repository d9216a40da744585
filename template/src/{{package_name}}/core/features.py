"""Feature computation in plain pandas: the point-in-time join and latest values.

This is the path with no feature store; with one, Feast performs the same two
operations (historical and online retrieval) from the same feature contract.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from .schema import ENTITY, FEATURE_NAMES, FEATURES, TIMESTAMP

if TYPE_CHECKING:
    import pandas as pd

# A snapshot older than this is stale and is not joined (Feast's TTL).
FEATURE_TTL = timedelta(days=45)


def point_in_time_join(
    entities: pd.DataFrame, features: pd.DataFrame, ttl: timedelta = FEATURE_TTL
) -> pd.DataFrame:
    """For each (entity, timestamp) row, the latest snapshot at or before that time.

    Rows whose newest earlier snapshot is older than `ttl` are dropped, as
    Feast's offline store does, so both paths build the same training set.
    """
    import pandas as pd

    # Both sides in one resolution: merge_asof refuses ns against us keys.
    left = entities.assign(
        **{TIMESTAMP: pd.to_datetime(entities[TIMESTAMP], utc=True).astype("datetime64[us, UTC]")}
    )
    right = features.assign(
        **{TIMESTAMP: pd.to_datetime(features[TIMESTAMP], utc=True).astype("datetime64[us, UTC]")}
    )
    # merge_asof needs both sides sorted on the time key.
    left = left.sort_values(TIMESTAMP, kind="stable")
    right = right.sort_values(TIMESTAMP, kind="stable")
    right = right[[ENTITY, TIMESTAMP, *FEATURE_NAMES]]
    joined = pd.merge_asof(
        left,
        right,
        on=TIMESTAMP,
        by=ENTITY,
        direction="backward",
        tolerance=pd.to_timedelta(ttl),
    )
    joined = joined.dropna(subset=list(FEATURE_NAMES))
    # The join leaves NaN room in integer columns; restore the contract's types.
    joined = joined.astype({spec.name: spec.dtype for spec in FEATURES if not spec.is_categorical})
    return joined.sort_values([ENTITY, TIMESTAMP], kind="stable").reset_index(drop=True)


def latest_features(features: pd.DataFrame) -> pd.DataFrame:
    """The newest snapshot per entity, indexed by entity: what an online store holds."""
    latest = features.sort_values(TIMESTAMP, kind="stable").groupby(ENTITY).tail(1)
    return latest.set_index(ENTITY)[list(FEATURE_NAMES)]
