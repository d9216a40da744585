"""The drift check: recent inputs against the champion's training data.

Evidently tests every feature of the contract. The verdict and the per-feature
scores go to an HTML report and a JSON summary, and the same figures are
exported as Prometheus metrics: always as a textfile (for node_exporter's
textfile collector), and pushed to a Pushgateway when one is configured.
"""

from __future__ import annotations

import functools
import tempfile
import time
import warnings
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..core.schema import CATEGORICAL_FEATURES, FEATURE_NAMES, NUMERIC_FEATURES, validate_frame
from .drift_summary import DriftSummary, FeatureDrift
from .report_header import add_section, drift_rows

if TYPE_CHECKING:
    import pandas as pd
    from evidently.legacy.calculations.stattests import StatTest

    from ..config import Settings
    from .drift_summary import ScoreKind

# Every exported metric name starts with this; the Pushgateway job uses it too.
METRIC_PREFIX = "churn_drift"
# Evidently stat tests `drift_method` may name; each applies to the feature
# types it supports, the other features keep Evidently's automatic choice.
SUPPORTED_METHODS: tuple[str, ...] = (
    "ks",
    "chisquare",
    "wasserstein",
    "psi",
    "jensenshannon",
    "hellinger",
    "kl_div",
    "mannw",
    "anderson",
    "ed",
    "TVD",
)


class MissingReferenceError(LookupError):
    """There is no champion (or it has no reference data) to compare against."""


def check_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    settings: Settings,
    *,
    name: str = "drift",
    window: tuple[datetime, datetime] | None = None,
) -> DriftSummary:
    """Compare `current` with `reference`; write `<name>.html/.json/.prom` to the reports dir.

    The dataset counts as drifted when the share of drifted features reaches
    `settings.drift_share`. The HTML report's header names the model version the
    reference belongs to (from `load_reference`) and the time window of `current`,
    when given. Raises DataValidationError when either frame breaks the feature
    contract, and ValueError for an unknown `settings.drift_method`.
    """
    # Configuration and data errors first: importing Evidently takes seconds.
    methods = _preset_methods(settings.drift_method)
    validate_frame(current, f"current batch ({name})", require=FEATURE_NAMES)
    validate_frame(reference, "drift reference", require=FEATURE_NAMES)
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=list(NUMERIC_FEATURES), categorical_columns=list(CATEGORICAL_FEATURES)
    )
    columns = list(FEATURE_NAMES)
    report = Report(
        [
            DataDriftPreset(
                drift_share=settings.drift_share,
                num_method=methods.get("num_method"),
                cat_method=methods.get("cat_method"),
            )
        ],
        include_tests=True,
    )
    snapshot = report.run(
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    drifted_share, features = _read_results(snapshot.dict())

    settings.ensure_dirs()
    reports = settings.reports_dir
    dataset_drift = drifted_share >= settings.drift_share
    summary = DriftSummary(
        dataset_drift=dataset_drift,
        drifted_share=drifted_share,
        drift_share_threshold=settings.drift_share,
        features=features,
        n_reference=len(reference),
        n_current=len(current),
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        html_path=reports / f"{name}.html",
        json_path=reports / f"{name}.json",
        metrics_path=reports / f"{name}.prom",
        retrain_recommended=dataset_drift,
    )
    # Evidently writes only when given a str path; a Path is silently ignored.
    snapshot.save_html(str(summary.html_path))
    header = drift_rows(summary, reference, settings, window)
    add_section(summary.html_path, f"Data drift: {name}", header)
    summary.json_path.write_text(summary.to_json() + "\n", encoding="utf-8")
    _export_metrics(summary, name, settings.pushgateway_url)
    return summary


def load_reference(settings: Settings) -> pd.DataFrame:
    """The champion's training features, downloaded from its MLflow run; the frame's
    ``attrs["model_version"]`` says whose (the drift report's header shows it)."""
    import mlflow.artifacts
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from ..io import registry

    client = registry.connect(settings)
    champion = registry.by_alias(client, settings.model_name, settings.champion_alias)
    if champion is None:
        raise MissingReferenceError(
            f"no '{settings.champion_alias}' version of '{settings.model_name}' in the registry at "
            f"{settings.mlflow_tracking_uri}: train and promote a model before checking drift"
        )
    with tempfile.TemporaryDirectory(prefix="drift-reference-") as scratch:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=champion.run_id, artifact_path=registry.REFERENCE_ARTIFACT, dst_path=scratch
            )
        except (MlflowException, OSError) as exc:
            raise MissingReferenceError(
                f"champion version {champion.version} of '{settings.model_name}' has no "
                f"'{registry.REFERENCE_ARTIFACT}' artifact in run {champion.run_id}: {exc}"
            ) from exc
        reference = pd.read_parquet(path)
    reference.attrs["model_version"] = champion.version
    return reference


def score_kind(method: str) -> ScoreKind:
    """Whether `method` (an Evidently stat test name or display name) scores p-values or distances."""
    return _score_kind(_stat_test(method).name)


def _preset_methods(method: str) -> dict[str, str]:
    """DataDriftPreset arguments for `drift_method`: none for "auto", else per column type."""
    if method == "auto":
        return {}
    if method not in SUPPORTED_METHODS:
        raise ValueError(
            f"drift_method must be 'auto' or one of {', '.join(SUPPORTED_METHODS)}; got {method!r}"
        )
    from evidently.legacy.core import ColumnType

    allowed = _stat_test(method).allowed_feature_types
    methods = {}
    if ColumnType.Numerical in allowed:
        methods["num_method"] = method
    if ColumnType.Categorical in allowed:
        methods["cat_method"] = method
    return methods


@functools.cache
def _stat_tests() -> dict[str, StatTest]:
    """Evidently's stat tests by name and by display name.

    A result names its test by name when the method was pinned and by display
    name when Evidently chose it, so both must resolve.
    """
    from evidently.legacy.calculations import stattests

    tests = [value for value in vars(stattests).values() if isinstance(value, stattests.StatTest)]
    return {key: test for test in tests for key in (test.name, test.display_name)}


def _stat_test(method: str) -> StatTest:
    try:
        return _stat_tests()[method]
    except KeyError:
        raise ValueError(f"Evidently has no stat test named {method!r}") from None


@functools.cache
def _score_kind(name: str) -> ScoreKind:
    # Names do not tell (Evidently's "TVD" returns a p-value), so ask the test
    # itself: on two identical samples, set the threshold just above the score
    # it returns. A test where small scores mean drift now reports drift; a
    # test where large scores mean drift does not.
    import pandas as pd
    from evidently.legacy.core import ColumnType

    test = _stat_test(name)
    if ColumnType.Numerical in test.allowed_feature_types:
        column_type, sample = ColumnType.Numerical, pd.Series([float(i % 17) for i in range(200)])
    else:
        column_type, sample = ColumnType.Categorical, pd.Series(["a", "b", "c", "d"] * 50)
    # Some scipy tests warn about ties in these samples; they are ours, not the user's.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        baseline = test(sample, sample, column_type, None).drift_score
        probe = test(sample, sample, column_type, baseline + 1e-9 + abs(baseline) * 1e-9)
    return "p_value" if probe.drifted else "distance"


def _read_results(result: dict[str, Any]) -> tuple[float, dict[str, FeatureDrift]]:
    """The drifted share and per-feature results out of Evidently's report dictionary."""
    # Each ValueDrift metric carries one test whose FAIL status means "drifted".
    status = {
        test["metric_config"]["metric_id"]: test["status"]
        for test in result["tests"]
        if test["id"] == "drift"
    }
    share: float | None = None
    features: dict[str, FeatureDrift] = {}
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif config["type"].endswith(":ValueDrift"):
            test = _stat_test(config["method"])
            features[config["column"]] = FeatureDrift(
                score=float(metric["value"]),
                method=test.name,
                threshold=float(config["threshold"]),
                drifted=status[metric["id"]] == "FAIL",
                score_kind=_score_kind(test.name),
            )
    if share is None or set(features) != set(FEATURE_NAMES):
        raise RuntimeError(f"unexpected Evidently result: share={share}, features={list(features)}")
    return share, {feature: features[feature] for feature in FEATURE_NAMES}


def _export_metrics(summary: DriftSummary, name: str, pushgateway_url: str) -> None:
    """Write the summary as a Prometheus textfile, and push it when a gateway is set."""
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

    # A registry of its own: only this check's figures, never process metrics.
    registry = CollectorRegistry()
    # `check` tells several drift checks apart in one textfile directory.
    labels = ["check"]

    def gauge(metric: str, help_text: str, extra: tuple[str, ...] = ()) -> Gauge:
        return Gauge(f"{METRIC_PREFIX}_{metric}", help_text, [*labels, *extra], registry=registry)

    dataset_figures = {
        "dataset_drift": (
            "1 when the share of drifted features reaches the threshold",
            int(summary.dataset_drift),
        ),
        "drifted_share": ("Share of features whose drift test fired", summary.drifted_share),
        "drift_share_threshold": (
            "Share of drifted features that means dataset drift",
            summary.drift_share_threshold,
        ),
        "current_rows": ("Rows in the checked window", summary.n_current),
    }
    for metric, (help_text, value) in dataset_figures.items():
        gauge(metric, help_text).labels(name).set(value)
    score = gauge("feature_score", "Drift score per feature (see method)", ("feature", "method"))
    threshold = gauge("feature_threshold", "Drift threshold per feature", ("feature", "method"))
    drifted = gauge("feature_drifted", "1 when the feature's drift test fired", ("feature",))
    for feature, result in summary.features.items():
        score.labels(name, feature, result.method).set(result.score)
        threshold.labels(name, feature, result.method).set(result.threshold)
        drifted.labels(name, feature).set(int(result.drifted))
    # Alert when this grows old: the check stopped running, or keeps failing.
    finished = gauge("last_success_timestamp_seconds", "When the last drift check finished")
    finished.labels(name).set(time.time())

    write_to_textfile(str(summary.metrics_path), registry)
    if pushgateway_url:
        try:
            push_to_gateway(
                pushgateway_url, job=METRIC_PREFIX, grouping_key={"check": name}, registry=registry
            )
        except OSError as exc:
            raise RuntimeError(
                f"drift reports are in {summary.html_path.parent}, but pushing metrics to "
                f"{pushgateway_url} failed: {exc}"
            ) from exc
