"""Canary and shadow rollouts: the steps, their checks, and the release of a version.

The state is a `registry.Rollout` recorded on the registered model, next to the
aliases, so every worker of every running service follows it at its next poll,
with no restart, exactly as it follows the champion alias; which request goes to
which variant is `serving.routing`'s. Blue-green needs nothing from this module:
`registry.promote` and `registry.rollback` move the champion alias and all
traffic switches at once.

Steps. `CANARY_STEPS` go 5 -> 10 -> 25 -> 50 -> 100, and 100 promotes the
challenger. Before the challenger's share grows, `check_step` compares the two
versions on the requests served since the current step began (the inference log
holds only answered requests, so "error-free" is a given): enough requests for
the challenger, decisions that agree, an unshifted mean probability, and live
quality where labels came back. Both versions re-score the same logged features,
so the comparison is paired: identical models compare equal on any traffic, and
a difference is the models', not that of two groups of customers.

pandas, scikit-learn and MLflow load only inside the step checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..core.model import DECISION_THRESHOLD
from ..core.schema import FEATURE_NAMES, LABEL
from ..io import registry
from ..io.inference_log import open_inference_log

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from sklearn.pipeline import Pipeline

    from ..config import Settings

CANARY_STEPS: tuple[int, ...] = (5, 10, 25, 50, 100)


def next_step(percent: int) -> int:
    """The first canary step above `percent` (5 from no canary)."""
    return next((step for step in CANARY_STEPS if step > percent), CANARY_STEPS[-1])


# The step checks ---------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One comparison of the challenger with the champion, and whether it allows the step."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class StepReport:
    """The checks on the requests served since the rollout's current step began."""

    rollout: registry.Rollout
    champion: str
    # Requests per variant that served them ("champion", "challenger"); shadowed: scored in shadow.
    requests: dict[str, int]
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]


class StepRefusedError(registry.RolloutError):
    """A check failed: the challenger's share stays where it is."""

    def __init__(self, report: StepReport, step: str) -> None:
        self.report = report
        failed = "; ".join(f"{check.name}: {check.detail}" for check in report.failed)
        super().__init__(
            f"refused {step} for version {report.rollout.challenger}, failed check(s) "
            f"{failed}. Pass --force to take the step anyway"
        )


def compare(
    window: pd.DataFrame,
    champion: Pipeline,
    challenger: Pipeline,
    rollout: registry.Rollout,
    champion_version: str,
    settings: Settings,
) -> StepReport:
    """Judge the challenger against the champion on `window` (inference log rows)."""
    from sklearn.metrics import roc_auc_score

    served = window["variant"].value_counts()
    shadowed = int((window["shadow_version"] == rollout.challenger).sum())
    requests = {
        "champion": int(served.get("champion", 0)),
        "challenger": int(served.get("challenger", 0)),
        "shadowed": shadowed,
    }
    exposed, how = (
        (requests["challenger"], "served by")
        if rollout.mode == "canary"
        else (shadowed, "scored in shadow by")
    )
    minimum = settings.rollout_min_requests
    checks = [
        Check(
            "requests",
            exposed >= minimum,
            f"{exposed} requests {how} version {rollout.challenger} (minimum {minimum})",
        )
    ]
    if window.empty:
        return StepReport(rollout, champion_version, requests, tuple(checks))

    features = window[list(FEATURE_NAMES)]
    champion_probability = champion.predict_proba(features)[:, 1]
    challenger_probability = challenger.predict_proba(features)[:, 1]
    differ = float(
        (
            (champion_probability >= DECISION_THRESHOLD)
            != (challenger_probability >= DECISION_THRESHOLD)
        ).mean()
    )
    most = settings.rollout_max_disagreement
    checks.append(
        Check(
            "agreement",
            differ <= most,
            f"decisions differ on {differ:.1%} of {len(window)} requests (maximum {most:.1%})",
        )
    )
    shift = float(challenger_probability.mean() - champion_probability.mean())
    most = settings.rollout_max_probability_shift
    checks.append(
        Check(
            "probability shift",
            abs(shift) <= most,
            f"mean churn probability {shift:+.3f} against the champion (maximum ±{most:g})",
        )
    )

    labelled = window[LABEL].notna().to_numpy()
    truth = window.loc[labelled, LABEL].astype(int).to_numpy()
    if len(truth) < settings.quality_min_labels or len(set(truth)) < 2:
        checks.append(
            Check(
                "live quality",
                # Labels come late: their absence holds no step back.
                True,
                f"not judged: {len(truth)} labelled requests "
                f"(needs {settings.quality_min_labels}, with both outcomes)",
            )
        )
    else:
        champion_auc = float(roc_auc_score(truth, champion_probability[labelled]))
        challenger_auc = float(roc_auc_score(truth, challenger_probability[labelled]))
        # The gate's tolerance: what a challenger may lose against the champion.
        floor = champion_auc - settings.gate_max_regression
        checks.append(
            Check(
                "live quality",
                challenger_auc >= floor,
                f"AUC {challenger_auc:.4f} against the champion's {champion_auc:.4f} on the "
                f"same {len(truth)} labelled requests (minimum {floor:.4f})",
            )
        )
    return StepReport(rollout, champion_version, requests, tuple(checks))


def _active(state: registry.ServingState, settings: Settings) -> registry.Rollout:
    rollout = state.active_rollout
    if rollout is None or state.champion is None:
        raise registry.RolloutError(
            f"no canary or shadow rollout of model '{settings.model_name}' is under way"
        )
    return rollout


def check_step(client: MlflowClient, settings: Settings) -> StepReport:
    """The checks of the rollout under way, on the requests served since its step began."""
    state = registry.serving_state(client, settings)
    rollout = _active(state, settings)
    assert state.champion is not None  # _active checked it
    name = settings.model_name
    with open_inference_log(settings) as log:
        window = log.read_window(rollout.since)
    return compare(
        window,
        registry.load_model(registry.get_version(client, name, state.champion)),
        registry.load_model(registry.get_version(client, name, rollout.challenger)),
        rollout,
        state.champion,
        settings,
    )


# Moving the rollout ------------------------------------------------------------


@dataclass(frozen=True)
class RolloutChange:
    """What a `canary` or `shadow` call did."""

    before: registry.Rollout | None
    # None once the challenger was promoted (the canary reached 100 %).
    after: registry.Rollout | None
    # The checks that allowed the step (or that --force overrode); None when none ran.
    report: StepReport | None = None
    promoted: registry.ChampionChange | None = None


def _challenger(
    client: MlflowClient, settings: Settings, state: registry.ServingState
) -> registry.ModelRef:
    name = settings.model_name
    if state.champion is None:
        raise registry.RolloutError(
            f"no version of model '{name}' has the alias '{settings.champion_alias}': "
            "promote one first, there is nothing to compare with"
        )
    if state.challenger is None:
        raise registry.RolloutError(
            f"no version of model '{name}' has the alias '{settings.challenger_alias}': "
            "train one to roll out"
        )
    if state.challenger == state.champion:
        raise registry.RolloutError(
            f"the challenger of model '{name}' is version {state.challenger}, "
            "which is already the champion: nothing to roll out"
        )
    return registry.get_version(client, name, state.challenger)


def canary(
    client: MlflowClient,
    settings: Settings,
    percent: int | None = None,
    *,
    force: bool = False,
) -> RolloutChange:
    """Route `percent` % of customers (default: the next step) to the challenger.

    Starting a canary (from none or from shadow) needs the challenger to have
    passed the gate. Growing its share needs `check_step` to pass. Shrinking
    it is always allowed. 100 promotes the challenger and ends the rollout.
    `force` overrides the gate and the checks; `StepRefusedError` says which failed.
    """
    state = registry.serving_state(client, settings)
    challenger = _challenger(client, settings, state)
    current = state.active_rollout
    current_percent = current.percent if current is not None and current.mode == "canary" else 0
    target = next_step(current_percent) if percent is None else percent
    if not 1 <= target <= 100:
        raise registry.RolloutError(f"a canary routes 1 to 100 % of customers, not {target}")
    if current is not None and current.mode == "canary" and target == current_percent:
        raise registry.RolloutError(f"the canary is at {target} % already")
    step = f"the canary step to {target} %"
    report = None
    if current is None or current.mode == "shadow":
        registry.require_gate_passed(challenger, force=force)
    if current is not None and target > current_percent:
        report = check_step(client, settings)
        if not report.passed and not force:
            raise StepRefusedError(report, step)
    if target == 100:
        promoted = registry.promote(client, settings, challenger.version, force=force)
        return RolloutChange(current, None, report, promoted)
    after = registry.Rollout("canary", challenger.version, datetime.now(UTC), target)
    registry.set_rollout(client, settings, after)
    return RolloutChange(current, after, report)


def shadow(client: MlflowClient, settings: Settings) -> RolloutChange:
    """Let the challenger score a copy of every request; responses stay the champion's.

    No customer sees the challenger, so neither the gate nor a check is needed:
    shadow is also how to watch a challenger that failed the gate on live traffic.
    """
    state = registry.serving_state(client, settings)
    challenger = _challenger(client, settings, state)
    current = state.active_rollout
    if current is not None and current.mode == "shadow":
        raise registry.RolloutError(f"version {challenger.version} is in shadow already")
    after = registry.Rollout("shadow", challenger.version, datetime.now(UTC))
    registry.set_rollout(client, settings, after)
    return RolloutChange(current, after)


def release(client: MlflowClient, settings: Settings, version: str) -> RolloutChange:
    """Put `version` (it passed the gate) into service as `settings.rollout_strategy` says.

    blue-green promotes it: every request switches at the services' next poll.
    canary and shadow make it the challenger and start the rollout at the first
    canary step or in shadow. With no champion yet there is nothing to compare
    with, so it is promoted whatever the strategy.
    """
    state = registry.serving_state(client, settings)
    if settings.rollout_strategy == "blue-green" or state.champion is None:
        promoted = registry.promote(client, settings, version)
        return RolloutChange(state.active_rollout, None, promoted=promoted)
    ref = registry.get_version(client, settings.model_name, version)
    registry.set_alias(client, ref, settings.challenger_alias)
    if settings.rollout_strategy == "shadow":
        return shadow(client, settings)
    return canary(client, settings, CANARY_STEPS[0])
