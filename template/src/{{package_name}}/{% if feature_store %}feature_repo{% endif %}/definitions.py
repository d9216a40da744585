"""Feast definitions of the customer features: entity, source, feature view, service.

The feature view's schema is generated from ``core.schema.FEATURES``, the
contract that training, serving and monitoring already share, so a feature is
defined once. To add one:

1. add a ``FeatureSpec`` to ``core.schema.FEATURES``;
2. produce the column in the snapshot data (``core.dataset`` or your real source);
3. run ``features apply`` and ``features materialize`` from the CLI, then retrain.

A new group of features with its own entity or source becomes a second
``FeatureView`` returned by ``build_definitions`` and added to the service.

This module imports Feast at import time; only the Feast-backed feature source
imports it, and only inside its methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64, String

from ..core.features import FEATURE_TTL
from ..core.schema import ENTITY, FEATURES, TIMESTAMP

if TYPE_CHECKING:
    from feast.feast_object import FeastObject

FEATURE_VIEW = "customer_features"
FEATURE_SERVICE = "churn_model"

# Contract dtypes to Feast types.
FEAST_TYPES = {"int64": Int64, "float64": Float64, "string": String}

customer = Entity(
    name="customer",
    join_keys=[ENTITY],
    value_type=ValueType.INT64,
    description="A customer account",
)


def customer_source(location: str) -> FileSource:
    """Monthly feature snapshots: one row per customer and snapshot time.

    `location` is a local path or an object store URL (read through fsspec).
    """
    return FileSource(
        name="customer_snapshots",
        path=location,
        timestamp_field=TIMESTAMP,
        description="Customer feature snapshots (parquet)",
    )


def customer_features(source: FileSource) -> FeatureView:
    """Every contract feature; a snapshot older than the TTL is not served or joined."""
    return FeatureView(
        name=FEATURE_VIEW,
        entities=[customer],
        ttl=FEATURE_TTL,
        schema=[
            Field(name=spec.name, dtype=FEAST_TYPES[spec.dtype], description=spec.description)
            for spec in FEATURES
        ],
        source=source,
        online=True,
    )


def build_definitions(source_location: str) -> list[FeastObject]:
    """All objects of the repository, reading snapshots from `source_location`."""
    source = customer_source(source_location)
    view = customer_features(source)
    service = FeatureService(
        name=FEATURE_SERVICE,
        features=[view],
        description="Features the churn model is trained and served on",
    )
    return [customer, source, view, service]
