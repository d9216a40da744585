"""The training pipeline as a Prefect flow.

validate -> build features (point in time) + served predictions whose outcome
came back -> split -> train -> evaluate -> gate (thresholds AND no regression vs
the champion) -> register as challenger with a model card -> promote to
champion when the gate passes. Re-running on the same data and parameters
reuses the registered version instead of adding a new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from ..config import Settings
from ..core import model as model_lib
from ..core.dataset import ChurnData, generate
from ..core.gate import GateDecision, GatePolicy, decide
from ..core.model_card import ModelCard
from ..core.schema import ENTITY, FEATURE_NAMES, LABEL, TIMESTAMP, validate_frame
from ..io import registry
from ..io.feature_source import open_feature_source
from . import rollout

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingResult:
    version: str
    metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    gate: GateDecision
    promoted: bool
    reused: bool
    data_version: str
    # Served predictions with feedback labels that joined the training data.
    production_rows: int = 0
    reason: str = "manual run"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def data_version(frame: pd.DataFrame) -> str:
    """A content hash of the training set: same rows, same version."""
    import pandas as pd

    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def write_synthetic_data(settings: Settings) -> ChurnData:
    """The example's feature pipeline: snapshots to the feature source (offline and
    online), labels to parquet. Replace it with your own sources."""
    data = generate(settings.n_customers, settings.seed)
    settings.ensure_dirs()
    source = open_feature_source(settings)
    source.write(data)
    source.apply()
    source.materialize()
    data.labels.to_parquet(settings.data_dir / "labels.parquet", index=False)
    return data


def read_labels(settings: Settings) -> pd.DataFrame:
    """Labels to train on, validated; embedded mode generates the example data on first use.

    Raises DataValidationError naming every problem. The CLI calls it before the
    flow too, so bad input fails at once instead of after orchestration starts.
    """
    import pandas as pd

    labels_path = settings.data_dir / "labels.parquet"
    if not labels_path.exists():
        log.info("no labels at %s: generating the synthetic example data", labels_path)
        write_synthetic_data(settings)
    labels = pd.read_parquet(labels_path)
    return validate_frame(labels, f"labels ({labels_path})", require=(ENTITY, TIMESTAMP, LABEL))


@task(cache_policy=NO_CACHE)
def load_and_validate(settings: Settings) -> pd.DataFrame:
    return read_labels(settings)


@task(cache_policy=NO_CACHE)
def build_training_set(settings: Settings, labels: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time features for each label: no value from after the label's time."""
    source = open_feature_source(settings)
    source.apply()
    frame = source.historical(labels)
    dropped = len(labels) - len(frame)
    if dropped:
        log.info("%d label(s) had no feature snapshot within the TTL and were dropped", dropped)
    return validate_frame(frame, "training set", require=(ENTITY, TIMESTAMP, *FEATURE_NAMES, LABEL))


@task(cache_policy=NO_CACHE)
def add_production_rows(settings: Settings, frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Append the served predictions whose true outcome came back (feedback).

    They are the freshest labelled data there is: after drift, exactly the rows
    the champion has not seen. Their time is when they were served.
    """
    import pandas as pd

    from ..io.inference_log import SERVED_AT, open_store

    store = open_store(settings)
    try:
        served = store.read_window(datetime(1970, 1, 1, tzinfo=UTC), datetime.now(UTC))
    finally:
        store.close()
    labelled = served[served[LABEL].notna()]
    if labelled.empty:
        return frame, 0
    rows = pd.DataFrame(
        {
            ENTITY: labelled[ENTITY].fillna(-1).astype("int64"),
            TIMESTAMP: labelled[SERVED_AT].astype(frame[TIMESTAMP].dtype),
            LABEL: labelled[LABEL].astype("int64"),
            **{name: labelled[name].astype(frame[name].dtype) for name in FEATURE_NAMES},
        }
    )
    combined = pd.concat([frame, rows[frame.columns]], ignore_index=True)
    checked = validate_frame(
        combined,
        "training set with production rows",
        require=(ENTITY, TIMESTAMP, *FEATURE_NAMES, LABEL),
    )
    return checked, len(rows)


@task(cache_policy=NO_CACHE)
def train(settings: Settings, train_set: pd.DataFrame) -> Pipeline:
    pipeline = model_lib.build_pipeline(model_lib.DEFAULT_PARAMS, seed=settings.seed)
    return pipeline.fit(train_set[list(FEATURE_NAMES)], train_set[LABEL].to_numpy())


@task(cache_policy=NO_CACHE)
def evaluate_champion(settings: Settings, test_set: pd.DataFrame) -> dict[str, float] | None:
    """The current champion's metrics on the challenger's test set: a fair comparison."""
    client = registry.connect(settings)
    champion = registry.by_alias(client, settings.model_name, settings.champion_alias)
    if champion is None:
        return None
    return model_lib.evaluate(registry.load_model(champion), test_set)


@task(cache_policy=NO_CACHE)
def register(
    settings: Settings,
    model: Pipeline,
    metrics: dict[str, float],
    train_set: pd.DataFrame,
    version_of_data: str,
    card: ModelCard,
) -> tuple[registry.ModelRef, bool]:
    """Register a new version, or reuse the one trained from the same data and params."""
    client = registry.connect(settings)
    params = {**model_lib.DEFAULT_PARAMS, "seed": settings.seed, "test_size": settings.test_size}
    fingerprint = hashlib.sha256(
        json.dumps({"data": version_of_data, "params": params}, sort_keys=True).encode()
    ).hexdigest()[:16]
    existing = registry.by_tag(client, settings.model_name, "fingerprint", fingerprint)
    if existing is not None:
        return existing, True

    # The training features are the drift reference for this version.
    reference_path = settings.data_dir / "reference.parquet"
    train_set[list(FEATURE_NAMES)].to_parquet(reference_path, index=False)
    card_path = settings.data_dir / "model_card.md"
    card_path.write_text(card.to_markdown(), encoding="utf-8")
    ref = registry.log_and_register(
        client,
        settings,
        model,
        params=params,
        metrics=metrics,
        input_example=train_set[list(FEATURE_NAMES)].head(5),
        tags={
            "data_version": version_of_data,
            "git_sha": git_sha(),
            "fingerprint": fingerprint,
            "train_rows": str(len(train_set)),
        },
        artifacts={registry.REFERENCE_DIR: str(reference_path), "": str(card_path)},
    )
    return ref, False


@flow(name="training", log_prints=True)
def training_flow(settings: Settings | None = None, reason: str = "manual run") -> TrainingResult:
    settings = settings or Settings()
    settings.ensure_dirs()
    labels = load_and_validate(settings)
    frame = build_training_set(settings, labels)
    frame, production_rows = add_production_rows(settings, frame)
    train_set, test_set = model_lib.split(frame, settings.test_size, settings.seed)
    model = train(settings, train_set)
    metrics = model_lib.evaluate(model, test_set)
    champion_metrics = evaluate_champion(settings, test_set)
    decision = decide(
        GatePolicy(settings.gate_min_auc, settings.gate_min_f1, settings.gate_max_regression),
        metrics,
        champion_metrics,
    )
    version_of_data = data_version(frame)
    card = ModelCard(
        model_name=settings.model_name,
        reason=reason,
        data_version=version_of_data,
        window_start=frame[TIMESTAMP].min(),
        window_end=frame[TIMESTAMP].max(),
        train_rows=len(train_set),
        test_rows=len(test_set),
        production_rows=production_rows,
        metrics=metrics,
        champion_metrics=champion_metrics,
        gate_passed=decision.passed,
        gate_summary=decision.summary(),
    )
    ref, reused = register(settings, model, metrics, train_set, version_of_data, card)

    client = registry.connect(settings)
    registry.set_alias(client, ref, settings.challenger_alias)
    # The gate's verdict stays on the version: why it was (not) promoted.
    client.set_model_version_tag(ref.name, ref.version, registry.GATE_TAG, decision.summary())
    client.set_model_version_tag(ref.name, ref.version, "trained_because", reason)
    current = registry.by_alias(client, settings.model_name, settings.champion_alias)
    promoted = False
    if decision.passed and (current is None or current.version != ref.version):
        # As the rollout strategy says: blue-green promotes at once (through
        # `promote`, which records the replaced champion for `rollback`); canary
        # and shadow start a rollout of the challenger instead.
        promoted = rollout.release(client, settings, ref.version).promoted is not None
    return TrainingResult(
        version=ref.version,
        metrics=metrics,
        champion_metrics=champion_metrics,
        gate=decision,
        promoted=promoted,
        reused=reused,
        data_version=version_of_data,
        production_rows=production_rows,
        reason=reason,
    )


# The deployment the CLI's `schedule` command serves, as "scheduled-training/scheduled".
DEPLOYMENT_NAME = "scheduled"


@flow(name="scheduled-training", log_prints=True)
def scheduled_training() -> TrainingResult:
    """What the schedule runs: refresh the data (replace with your pipeline), then train."""
    settings = Settings()
    write_synthetic_data(settings)
    return training_flow(settings, reason="schedule")
