"""The production check, the loop's scheduled half: what the service saw against
what the champion learned from, and retraining when that has moved.

inference log (last `monitoring_window_hours`) -> data drift per feature
(Evidently, method stated) + prediction drift + live quality where feedback
labels arrived -> HTML report and JSON summary logged to MLflow against the
champion version -> Prometheus metrics (Pushgateway) -> when the data drifted or
live quality dropped: the training flow, whose gate decides whether the new
version replaces the champion.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from prefect import flow

from ..config import Settings
from ..core.schema import FEATURE_NAMES, LABEL
from ..io import registry
from .drift_summary import DriftSummary, FeatureDrift
from .monitoring import METRIC_PREFIX, MissingReferenceError, check_drift, load_reference
from .report_header import add_section
from .training import TrainingResult, training_flow

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# The name of this check in reports, metrics (label `check`) and MLflow.
CHECK_NAME = "production"
# Flow name / deployment name that `schedule` serves.
DEPLOYMENT_NAME = "hourly"


class NotEnoughDataError(RuntimeError):
    """Too few logged predictions in the window to judge drift."""


@dataclass(frozen=True)
class LiveQuality:
    """The champion's quality on served predictions whose outcome came back."""

    labelled_rows: int
    live: dict[str, float]
    reference: dict[str, float]
    # The largest fall, over AUC and F1, from the champion's training metrics.
    drop: float
    degraded: bool


@dataclass(frozen=True)
class ProductionCheck:
    model_version: str
    window_start: str
    window_end: str
    rows: int
    drift: DriftSummary
    prediction_drift: FeatureDrift
    quality: LiveQuality | None
    mlflow_run_id: str
    retrain_reason: str | None
    retraining: TrainingResult | None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["drift"] = self.drift.to_dict()
        return data


def live_quality(window: pd.DataFrame, reference: dict[str, float], max_drop: float) -> LiveQuality:
    """AUC, F1 and accuracy of the served probabilities against the feedback labels."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    labelled = window[window[LABEL].notna()]
    truth = labelled[LABEL].astype(int).to_numpy()
    probability = labelled["probability"].to_numpy()
    predicted = labelled["prediction"].astype(int).to_numpy()
    live = {
        # AUC needs both outcomes among the labels; until then it is unknown.
        "auc": float(roc_auc_score(truth, probability)) if len(set(truth)) == 2 else float("nan"),
        "f1": float(f1_score(truth, predicted, zero_division=0.0)),
        "accuracy": float(accuracy_score(truth, predicted)),
    }
    drops = [
        reference[name] - live[name]
        for name in ("auc", "f1")
        if name in reference and live[name] == live[name]  # NaN != NaN
    ]
    drop = max(drops, default=0.0)
    return LiveQuality(len(labelled), live, reference, drop, drop > max_drop)


def prediction_drift(reference: pd.Series, current: pd.Series, settings: Settings) -> FeatureDrift:
    """Drift of the served probabilities against the champion's on its training data."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    from .monitoring import score_kind

    definition = DataDefinition(numerical_columns=["probability"])
    method = None if settings.drift_method == "auto" else settings.drift_method
    # Evidently declares a private `_init_values` as a field, which reads as a required argument.
    drift = ValueDrift(column="probability", method=method)  # ty: ignore[missing-argument]  # see above
    report = Report([drift], include_tests=True)
    snapshot = report.run(
        current_data=Dataset.from_pandas(
            current.to_frame("probability"), data_definition=definition
        ),
        reference_data=Dataset.from_pandas(
            reference.to_frame("probability"), data_definition=definition
        ),
    )
    result = snapshot.dict()
    (metric,) = result["metrics"]
    (test,) = [test for test in result["tests"] if test["id"] == "drift"]
    config = metric["config"]
    return FeatureDrift(
        score=float(metric["value"]),
        method=config["method"],
        threshold=float(config["threshold"]),
        drifted=test["status"] == "FAIL",
        score_kind=score_kind(config["method"]),
    )


def _push_loop_metrics(
    settings: Settings, prediction: FeatureDrift, quality: LiveQuality | None
) -> None:
    """Prediction drift and live quality, next to the drift metrics of the same check."""
    from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway, write_to_textfile

    metrics = CollectorRegistry()
    Gauge(
        f"{METRIC_PREFIX}_prediction_drift",
        "1 when the served probabilities drifted from the training ones",
        ["check", "method"],
        registry=metrics,
    ).labels(CHECK_NAME, prediction.method).set(int(prediction.drifted))
    Gauge(
        f"{METRIC_PREFIX}_prediction_drift_score",
        "Drift score of the served probabilities (see method)",
        ["check", "method"],
        registry=metrics,
    ).labels(CHECK_NAME, prediction.method).set(prediction.score)
    if quality is not None:
        live = Gauge(
            f"{METRIC_PREFIX}_live_quality",
            "Champion quality on served predictions with feedback labels",
            ["check", "metric"],
            registry=metrics,
        )
        reference = Gauge(
            f"{METRIC_PREFIX}_reference_quality",
            "Champion quality at training time (held-out rows)",
            ["check", "metric"],
            registry=metrics,
        )
        for name, value in quality.live.items():
            if value == value:  # NaN: not known yet, so not exported
                live.labels(CHECK_NAME, name).set(value)
        for name, value in quality.reference.items():
            reference.labels(CHECK_NAME, name).set(value)
        Gauge(
            f"{METRIC_PREFIX}_labelled_rows",
            "Served predictions whose outcome came back, in the window",
            ["check"],
            registry=metrics,
        ).labels(CHECK_NAME).set(quality.labelled_rows)
    write_to_textfile(str(settings.reports_dir / f"{CHECK_NAME}-loop.prom"), metrics)
    if settings.pushgateway_url:
        # pushadd: replaces only these metrics, not the drift figures of the same group.
        pushadd_to_gateway(
            settings.pushgateway_url,
            job=METRIC_PREFIX,
            grouping_key={"check": CHECK_NAME},
            registry=metrics,
        )


def _prediction_rows(
    prediction: FeatureDrift, quality: LiveQuality | None, settings: Settings, reason: str | None
) -> list[tuple[str, str]]:
    """The report's second header: what the JSON summary holds beside the data drift."""
    verdict = "drift" if prediction.drifted else "no drift"
    rows = [
        (
            "Prediction drift",
            f"{verdict}: {prediction.method} {prediction.score:.4g} "
            f"(threshold {prediction.threshold:g})",
        )
    ]
    if quality is None:
        rows.append(
            ("Live quality", f"not judged: fewer than {settings.quality_min_labels} labelled rows")
        )
    else:
        live = ", ".join(f"{name} {value:.3f}" for name, value in quality.live.items())
        trained = ", ".join(
            f"{name} {quality.reference[name]:.3f}"
            for name in quality.live
            if name in quality.reference
        )
        rows += [
            ("Live quality", f"{live} on {quality.labelled_rows} labelled rows"),
            ("At training", trained or "no metrics recorded"),
            (
                "Largest drop",
                f"{quality.drop:.3f} ({'over' if quality.degraded else 'within'} "
                f"the allowed {settings.quality_max_drop:g})",
            ),
        ]
    rows.append(("Retraining", reason or "not needed"))
    return rows


def _log_to_mlflow(
    settings: Settings, champion: registry.ModelRef, summary: dict[str, Any], drift: DriftSummary
) -> str:
    """One run per check in the `<model>-monitoring` experiment, tagged with the version."""
    import mlflow

    client = registry.connect(settings)
    registry.use_experiment(settings, f"{settings.experiment_name}-monitoring")
    with mlflow.start_run(run_name=f"{CHECK_NAME}-v{champion.version}") as run:
        mlflow.set_tags(
            {"model_name": champion.name, "model_version": champion.version, "check": CHECK_NAME}
        )
        mlflow.log_metrics(
            {
                "drifted_share": drift.drifted_share,
                "dataset_drift": float(drift.dataset_drift),
                "rows": float(drift.n_current),
            }
        )
        mlflow.log_artifact(str(drift.html_path), artifact_path="report")
        mlflow.log_dict(summary, "report/summary.json")
    client.set_model_version_tag(champion.name, champion.version, "last_check_run", run.info.run_id)
    return str(run.info.run_id)


@flow(name="production-check", log_prints=True)
def production_check(
    settings: Settings | None = None, window_hours: float | None = None
) -> ProductionCheck:
    """Judge the last window of served predictions; retrain when it calls for it."""
    from ..core.model import to_matrix
    from ..io.inference_log import open_store

    settings = settings or Settings()
    settings.ensure_dirs()
    end = datetime.now(UTC)
    start = end - timedelta(hours=window_hours or settings.monitoring_window_hours)
    store = open_store(settings)
    try:
        window = store.read_window(start, end)
    finally:
        store.close()
    if len(window) < settings.monitoring_min_rows:
        raise NotEnoughDataError(
            f"{len(window)} predictions logged between {start:%Y-%m-%d %H:%M} and "
            f"{end:%Y-%m-%d %H:%M} UTC; the check needs at least {settings.monitoring_min_rows} "
            "(monitoring_min_rows)"
        )

    reference = load_reference(settings)  # MissingReferenceError without a champion
    client = registry.connect(settings)
    champion = registry.by_alias(client, settings.model_name, settings.champion_alias)
    if champion is None:  # demoted between the two calls
        raise MissingReferenceError(f"no '{settings.champion_alias}' version any more")
    drift = check_drift(
        reference, window[list(FEATURE_NAMES)], settings, name=CHECK_NAME, window=(start, end)
    )

    import pandas as pd

    model = registry.load_model(champion)
    reference_probability = pd.Series(model.predict_proba(to_matrix(reference))[:, 1])
    # During a canary the window mixes two versions: the inputs drift together,
    # but predictions and live quality are the champion's own rows.
    served = window[window["variant"] == "champion"] if "variant" in window else window
    prediction = prediction_drift(
        reference_probability, served["probability"].astype(float), settings
    )
    quality = None
    if int(served[LABEL].notna().sum()) >= settings.quality_min_labels:
        run = client.get_run(champion.run_id)
        quality = live_quality(served, dict(run.data.metrics), settings.quality_max_drop)
    _push_loop_metrics(settings, prediction, quality)

    reasons = []
    if drift.dataset_drift:
        reasons.append(f"data drift in {', '.join(drift.drifted_features)}")
    if quality is not None and quality.degraded:
        reasons.append(f"live quality {quality.drop:.3f} below the champion's training metrics")
    reason = "; ".join(reasons) or None

    summary: dict[str, Any] = {
        "model_version": champion.version,
        "window": [start.isoformat(timespec="seconds"), end.isoformat(timespec="seconds")],
        "rows": len(window),
        "drift": drift.to_dict(),
        "prediction_drift": asdict(prediction),
        "quality": asdict(quality) if quality else None,
        "retrain_reason": reason,
    }
    (settings.reports_dir / f"{CHECK_NAME}-summary.json").write_text(
        json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8"
    )
    section = _prediction_rows(prediction, quality, settings, reason)
    add_section(drift.html_path, "Predictions and live quality", section)
    run_id = _log_to_mlflow(settings, champion, summary, drift)

    retraining = None
    if reason and settings.retrain_on_alert:
        log.info("retraining: %s", reason)
        started = time.monotonic()
        retraining = training_flow(settings, reason=reason)
        log.info(
            "retrained in %.1f s: version %s, %s",
            time.monotonic() - started,
            retraining.version,
            "promoted" if retraining.promoted else f"not promoted ({retraining.gate.summary()})",
        )
    return ProductionCheck(
        model_version=champion.version,
        window_start=summary["window"][0],
        window_end=summary["window"][1],
        rows=len(window),
        drift=drift,
        prediction_drift=prediction,
        quality=quality,
        mlflow_run_id=run_id,
        retrain_reason=reason,
        retraining=retraining,
    )
