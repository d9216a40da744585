"""The quality gate: absolute thresholds AND no regression against the champion."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GatePolicy:
    min_auc: float
    min_f1: float
    # How much AUC the challenger may lose against the champion on the same test set.
    max_regression: float


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return "passed" if self.passed else "failed: " + "; ".join(self.reasons)


def decide(
    policy: GatePolicy,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
) -> GateDecision:
    """`champion` holds the current champion's metrics on the challenger's test set."""
    reasons: list[str] = []
    if challenger["auc"] < policy.min_auc:
        reasons.append(f"auc {challenger['auc']:.4f} < minimum {policy.min_auc:.4f}")
    if challenger["f1"] < policy.min_f1:
        reasons.append(f"f1 {challenger['f1']:.4f} < minimum {policy.min_f1:.4f}")
    if champion is not None:
        floor = champion["auc"] - policy.max_regression
        if challenger["auc"] < floor:
            reasons.append(
                f"auc {challenger['auc']:.4f} is worse than the champion's "
                f"{champion['auc']:.4f} by more than {policy.max_regression:.4f}"
            )
    return GateDecision(passed=not reasons, reasons=reasons)
