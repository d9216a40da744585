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
