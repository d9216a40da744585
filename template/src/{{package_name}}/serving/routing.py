"""Which variant serves a request during a canary: the sticky split.

The rollout state is a `registry.Rollout` recorded on the registered model
(``jobs.rollout`` moves it); every worker of every running service follows it
at its next poll, with no restart.

A request goes to the challenger when its bucket, 0 to 99, is below the canary
percent. The bucket is a stable hash (BLAKE2b; Python's `hash` differs between
processes) of the customer id, salted with the challenger's version. So a
customer gets the same variant on every request and from every worker; raising
the percent only moves customers from the champion to the challenger, never
back; and each new challenger is tried on a different slice of customers. A
full-row request carries no id: its bucket hashes the feature values in contract
order and types, so the same row always gets the same variant.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from ..core.schema import FEATURES

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ..io import registry

# Contract dtype -> the canonical Python value of a full-row request's feature.
_CANONICAL: dict[str, Callable[[Any], Any]] = {"int64": int, "float64": float, "string": str}


def bucket(key: str, salt: str) -> int:
    """`key`'s bucket, 0 to 99: the same in every process and on every machine."""
    digest = hashlib.blake2b(f"{salt}/{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


def customer_key(customer_id: int) -> str:
    return f"customer:{customer_id}"


def row_key(features: Mapping[str, Any]) -> str:
    """A full row's key: its values in contract order and types (70 and 70.0 are one row)."""
    values = [_CANONICAL[spec.dtype](features[spec.name]) for spec in FEATURES]
    return "row:" + json.dumps(values, separators=(",", ":"))


def to_challenger(key: str, rollout: registry.Rollout) -> bool:
    """Whether the request with this key is served by the challenger."""
    return rollout.mode == "canary" and bucket(key, rollout.challenger) < rollout.percent
