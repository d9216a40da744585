"""What a drift check decided, as data: per feature, and for the whole batch."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pathlib import Path

# "p_value": a small score means drift; "distance": a large score means drift.
ScoreKind = Literal["p_value", "distance"]


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's test, as Evidently ran it."""

    score: float
    method: str
    threshold: float
    drifted: bool
    score_kind: ScoreKind


@dataclass(frozen=True)
class DriftSummary:
    """The machine-readable verdict of one drift check."""

    dataset_drift: bool
    drifted_share: float
    drift_share_threshold: float
    features: dict[str, FeatureDrift]
    n_reference: int
    n_current: int
    generated_at: str
    html_path: Path
    json_path: Path
    metrics_path: Path
    # What a scheduler acts on: drift in the inputs means the model is stale.
    retrain_recommended: bool

    @property
    def drifted_features(self) -> tuple[str, ...]:
        return tuple(name for name, feature in self.features.items() if feature.drifted)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("html_path", "json_path", "metrics_path"):
            data[key] = str(data[key])
        data["drifted_features"] = list(self.drifted_features)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
