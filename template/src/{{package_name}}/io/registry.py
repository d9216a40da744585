"""MLflow tracking and registry: the only module that talks to MLflow."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from sklearn.pipeline import Pipeline

    from ..config import Settings

# Where each training run logs its drift reference (the training features).
REFERENCE_DIR = "reference"
REFERENCE_ARTIFACT = f"{REFERENCE_DIR}/reference.parquet"
# What the model needs at inference time; pinned to what trained it.
INFERENCE_PACKAGES = ("scikit-learn", "numpy", "pandas", "scipy")
# The training flow records the gate's verdict on each version under this tag.
GATE_TAG = "gate"
# Set on a champion by `promote`: the version it replaced, where `rollback` returns to.
PREVIOUS_CHAMPION_TAG = "previous_champion"


class RolloutError(Exception):
    """A promotion or rollback that cannot be done as asked; the message says why."""


class GateNotPassedError(RolloutError):
    """The version to promote did not pass the quality gate."""


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    run_id: str
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def connect(settings: Settings) -> MlflowClient:
    """Point MLflow at the configured stores and return a client."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri or settings.mlflow_tracking_uri)
    if mlflow.get_experiment_by_name(settings.experiment_name) is None:
        mlflow.create_experiment(
            settings.experiment_name, artifact_location=settings.mlflow_artifact_location
        )
    mlflow.set_experiment(settings.experiment_name)
    return mlflow.MlflowClient()


def _ref(model_version: Any) -> ModelRef:
    return ModelRef(
        name=model_version.name,
        version=str(model_version.version),
        run_id=model_version.run_id,
        tags=dict(model_version.tags),
    )


def by_alias(client: MlflowClient, name: str, alias: str) -> ModelRef | None:
    from mlflow.exceptions import MlflowException

    try:
        return _ref(client.get_model_version_by_alias(name, alias))
    except MlflowException:
        # No registered model yet, or the alias is not set: both mean "none".
        return None


def by_tag(client: MlflowClient, name: str, key: str, value: str) -> ModelRef | None:
    """The newest version whose tag `key` equals `value`."""
    versions = client.search_model_versions(f"name = '{name}'")
    matches = [v for v in versions if v.tags.get(key) == value]
    return _ref(max(matches, key=lambda v: int(v.version))) if matches else None


def set_alias(client: MlflowClient, ref: ModelRef, alias: str) -> None:
    client.set_registered_model_alias(ref.name, alias, ref.version)


@dataclass(frozen=True)
class ChampionChange:
    """What `promote` or `rollback` did: the champion before (if any) and after."""

    previous: ModelRef | None
    champion: ModelRef


def _version(client: MlflowClient, name: str, version: str) -> ModelRef:
    from mlflow.exceptions import MlflowException

    try:
        return _ref(client.get_model_version(name, version))
    except MlflowException:
        raise RolloutError(f"model '{name}' has no version {version}") from None


def promote(
    client: MlflowClient, settings: Settings, version: str | None = None, *, force: bool = False
) -> ChampionChange:
    """Move the champion alias to `version` (default: the challenger's).

    The replaced champion is recorded on the new one (tag `previous_champion`)
    so that `rollback` knows where to return. A version whose gate verdict is
    not "passed" is refused unless `force`. Services polling the alias swap the
    new champion in by themselves.
    """
    name = settings.model_name
    if version is None:
        target = by_alias(client, name, settings.challenger_alias)
        if target is None:
            raise RolloutError(
                f"no version of model '{name}' has the alias '{settings.challenger_alias}': "
                "train one, or name the version to promote"
            )
    else:
        target = _version(client, name, version)
    current = by_alias(client, name, settings.champion_alias)
    if current is not None and current.version == target.version:
        raise RolloutError(f"version {target.version} of model '{name}' is already the champion")
    verdict = target.tags.get(GATE_TAG)
    if not force and not (verdict or "").startswith("passed"):
        raise GateNotPassedError(
            f"version {target.version} of model '{name}' did not pass the gate "
            f"({verdict or 'no verdict recorded'}): pass --force to promote it anyway"
        )
    if current is not None:
        client.set_model_version_tag(name, target.version, PREVIOUS_CHAMPION_TAG, current.version)
    elif PREVIOUS_CHAMPION_TAG in target.tags:
        # Left from an earlier promotion of this version: rolling back to it would be wrong now.
        client.delete_model_version_tag(name, target.version, PREVIOUS_CHAMPION_TAG)
    set_alias(client, target, settings.champion_alias)
    return ChampionChange(previous=current, champion=_version(client, name, target.version))


def rollback(client: MlflowClient, settings: Settings) -> ChampionChange:
    """Move the champion alias back to the version the current champion replaced.

    Each version keeps its own `previous_champion` tag, so rolling back again
    goes one more promotion back.
    """
    name = settings.model_name
    current = by_alias(client, name, settings.champion_alias)
    if current is None:
        raise RolloutError(
            f"no version of model '{name}' has the alias '{settings.champion_alias}': "
            "nothing to roll back"
        )
    previous = current.tags.get(PREVIOUS_CHAMPION_TAG)
    if not previous:
        raise RolloutError(
            f"champion version {current.version} of model '{name}' records no previous "
            "champion (it was not promoted with `promote`): nothing to roll back to"
        )
    target = _version(client, name, previous)
    set_alias(client, target, settings.champion_alias)
    return ChampionChange(previous=current, champion=target)


def load_model(ref: ModelRef) -> Pipeline:
    """The scikit-learn pipeline itself: the service scores it without pyfunc overhead."""
    import mlflow.sklearn

    return mlflow.sklearn.load_model(ref.uri)


def pip_requirements() -> list[str]:
    pins = []
    for package in INFERENCE_PACKAGES:
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return pins


def log_and_register(
    client: MlflowClient,
    settings: Settings,
    model: Pipeline,
    *,
    params: dict[str, Any],
    metrics: dict[str, float],
    input_example: pd.DataFrame,
    tags: dict[str, str],
    artifacts: dict[str, str] | None = None,
) -> ModelRef:
    """Log a run with the model, then register it as a new version carrying `tags`."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    signature = infer_signature(input_example, model.predict_proba(input_example)[:, 1])
    with mlflow.start_run(run_name=f"train-{tags.get('data_version', 'unknown')[:8]}"):
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.set_tags(tags)
        for artifact_path, local_path in (artifacts or {}).items():
            # "" puts the file at the top of the run's artifacts (e.g. the model card).
            mlflow.log_artifact(local_path, artifact_path=artifact_path or None)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=input_example,
            # Passing requirements skips MLflow's slow dependency inference.
            pip_requirements=pip_requirements(),
            registered_model_name=settings.model_name,
        )
    registered = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(settings.model_name, registered, key, value)
    return _ref(client.get_model_version(settings.model_name, registered))
