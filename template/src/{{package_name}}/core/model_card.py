"""The model card logged with every trained version: what it is, what it was fed,
how it compares with the champion, and where not to use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .model import DECISION_THRESHOLD
from .schema import ENTITY, FEATURES, LABEL

if TYPE_CHECKING:
    from datetime import datetime


@dataclass(frozen=True)
class ModelCard:
    model_name: str
    reason: str
    data_version: str
    window_start: datetime
    window_end: datetime
    train_rows: int
    test_rows: int
    production_rows: int
    metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    gate_passed: bool
    gate_summary: str

    def to_markdown(self) -> str:
        lines = [
            f"# Model card: {self.model_name}",
            "",
            f"Trained because: {self.reason}. Data version `{self.data_version}`.",
            "",
            "## Intended use",
            "",
            f"Scores the probability that a customer churns (`{LABEL}`), one customer at a",
            f"time by `{ENTITY}` (features from the online store) or from a full feature row,",
            "to rank customers for retention offers. A probability of "
            f"{DECISION_THRESHOLD:g} or more is served as a churn prediction.",
            "",
            "## Data",
            "",
            f"- Label window: {self.window_start:%Y-%m-%d} to {self.window_end:%Y-%m-%d} (UTC)",
            f"- Rows: {self.train_rows} for training, {self.test_rows} held out for evaluation",
            f"- Of all rows, {self.production_rows} are served predictions whose outcome came"
            " back as feedback",
            "",
            "## Signature",
            "",
            "| feature | type | allowed |",
            "|---|---|---|",
        ]
        for spec in FEATURES:
            allowed = (
                ", ".join(spec.categories)
                if spec.is_categorical
                else f"{spec.minimum:g} to {spec.maximum:g}"
            )
            lines.append(f"| {spec.name} | {spec.dtype} | {allowed} |")
        lines += [
            "",
            "Output: the churn probability (float in [0, 1]).",
            "",
            "## Evaluation (held-out rows)",
            "",
            "| metric | this version | champion on the same rows |",
            "|---|---|---|",
        ]
        for name, value in self.metrics.items():
            before = (self.champion_metrics or {}).get(name)
            shown = "-" if before is None else f"{before:.4f}"
            lines.append(f"| {name} | {value:.4f} | {shown} |")
        verdict = "passed: promoted to champion" if self.gate_passed else "failed: not promoted"
        lines += [
            "",
            f"Quality gate {verdict} ({self.gate_summary}).",
            "",
            "## Limitations",
            "",
            "- Trained on the distribution of the label window above: a shift in prices,",
            "  contracts or support load makes its scores stale; the production check",
            "  watches for that and retrains.",
            "- The probability is not calibrated per segment: compare customers, do not",
            "  read it as a frequency for small groups.",
            "- Scores customers only; it says nothing about why a customer leaves.",
            "",
        ]
        return "\n".join(lines)
