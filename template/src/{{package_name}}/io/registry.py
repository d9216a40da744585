"""MLflow tracking and registry: the only module that talks to MLflow.

What a service serves is registry state, so a running service follows it
without a restart: the `champion` alias, and during a canary or shadow
rollout the `challenger` alias plus the registered-model tag `ROLLOUT_TAG`
(a `Rollout`). `promote` and `rollback` clear that tag.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Literal

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
# A registered-model tag: the canary or shadow rollout under way, if any (see `Rollout`).
ROLLOUT_TAG = "rollout"

log = logging.getLogger(__name__)
# uv environments have no pip: MLflow warns on every logged model that it cannot pin
# pip's version in conda.yaml, which nothing here uses.
logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)


class RolloutError(Exception):
    """A promotion or rollback that cannot be done as asked; the message says why."""


class GateNotPassedError(RolloutError):
    """The version to promote did not pass the quality gate."""


RolloutMode = Literal["canary", "shadow"]


@dataclass(frozen=True)
class Rollout:
    """A challenger version exposed next to the champion, as `ROLLOUT_TAG` records it.

    canary: `percent` % of customers are served by the challenger. shadow: the
    champion serves everyone and the challenger scores a copy of each request.
    `since` is when this step began: the step checks read the requests served
    after it.
    """

    mode: RolloutMode
    challenger: str
    since: datetime
    percent: int = 0

    def describe(self) -> str:
        if self.mode == "canary":
            return f"canary: {self.percent} % of customers served by version {self.challenger}"
        return f"shadow: version {self.challenger} scores a copy of every request"

    def to_tag(self) -> str:
        return json.dumps({**asdict(self), "since": self.since.isoformat()}, sort_keys=True)

    @classmethod
    def from_tag(cls, value: str) -> Rollout | None:
        """The rollout a tag value records; None (and a warning) for one this code cannot read."""
        try:
            fields = json.loads(value)
            rollout = cls(
                mode=fields["mode"],
                challenger=str(fields["challenger"]),
                since=datetime.fromisoformat(fields["since"]),
                percent=int(fields.get("percent", 0)),
            )
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring the unreadable %s tag %r", ROLLOUT_TAG, value)
            return None
        if rollout.mode not in ("canary", "shadow") or not 0 <= rollout.percent <= 100:
            log.warning("ignoring the invalid %s tag %r", ROLLOUT_TAG, value)
            return None
        return rollout


@dataclass(frozen=True)
class ServingState:
    """The versions behind the aliases and the recorded rollout: one registry read."""

    champion: str | None
    challenger: str | None
    rollout: Rollout | None

    @property
    def active_rollout(self) -> Rollout | None:
        """The rollout, while it still applies: to the current challenger, not the champion.

        Training a new challenger (the alias moves) or promoting it ends a
        rollout by itself, even if nobody cleared the tag.
        """
        rollout = self.rollout
        if rollout is None or rollout.challenger != self.challenger:
            return None
        return None if rollout.challenger == self.champion else rollout


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
    # MLflow reads its download mode from the environment only (Settings.artifact_direct_download).
    os.environ["MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD"] = str(
        settings.artifact_direct_download
    ).lower()
    use_experiment(settings, settings.experiment_name)
    return mlflow.MlflowClient()


def use_experiment(settings: Settings, name: str) -> None:
    """Make ``name`` the active experiment, created under the configured artifact location.

    ``mlflow.set_experiment`` alone would create it with MLflow's default, ``./mlruns``
    in the working directory, when the tracking store is local.
    """
    import mlflow

    if mlflow.get_experiment_by_name(name) is None:
        mlflow.create_experiment(name, artifact_location=settings.mlflow_artifact_location)
    mlflow.set_experiment(name)


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


def serving_state(client: MlflowClient, settings: Settings) -> ServingState:
    """Champion, challenger and rollout in one call: what a service polls."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(settings.model_name)
    except MlflowException:
        # Nothing registered yet.
        return ServingState(None, None, None)
    aliases = {alias: str(number) for alias, number in (model.aliases or {}).items()}
    tag = (model.tags or {}).get(ROLLOUT_TAG)
    return ServingState(
        champion=aliases.get(settings.champion_alias),
        challenger=aliases.get(settings.challenger_alias),
        rollout=Rollout.from_tag(tag) if tag else None,
    )


def set_rollout(client: MlflowClient, settings: Settings, rollout: Rollout) -> None:
    """Record `rollout`: running services apply it at their next poll."""
    client.set_registered_model_tag(settings.model_name, ROLLOUT_TAG, rollout.to_tag())


def clear_rollout(client: MlflowClient, settings: Settings) -> None:
    """Back to champion-only serving (a no-op when no rollout is recorded)."""
    if serving_state(client, settings).rollout is not None:
        client.delete_registered_model_tag(settings.model_name, ROLLOUT_TAG)


@dataclass(frozen=True)
class ChampionChange:
    """What `promote` or `rollback` did: the champion before (if any) and after.

    `ended_rollout` is the canary or shadow rollout it stopped, if one was under way.
    """

    previous: ModelRef | None
    champion: ModelRef
    ended_rollout: Rollout | None = None


def get_version(client: MlflowClient, name: str, version: str) -> ModelRef:
    """One registered version; `RolloutError` naming it if there is no such version."""
    from mlflow.exceptions import MlflowException

    try:
        return _ref(client.get_model_version(name, version))
    except MlflowException:
        raise RolloutError(f"model '{name}' has no version {version}") from None


def require_gate_passed(ref: ModelRef, *, force: bool = False) -> None:
    """Raise `GateNotPassedError` unless `ref`'s gate verdict is "passed" (or `force`)."""
    verdict = ref.tags.get(GATE_TAG)
    if not force and not (verdict or "").startswith("passed"):
        raise GateNotPassedError(
            f"version {ref.version} of model '{ref.name}' did not pass the gate "
            f"({verdict or 'no verdict recorded'}): pass --force to use it anyway"
        )


def promote(
    client: MlflowClient, settings: Settings, version: str | None = None, *, force: bool = False
) -> ChampionChange:
    """Move the champion alias to `version` (default: the challenger's).

    The replaced champion is recorded on the new one (tag `previous_champion`)
    so that `rollback` knows where to return. A version whose gate verdict is
    not "passed" is refused unless `force`. A canary or shadow rollout ends
    (blue-green: every request moves at once). Services polling the alias swap
    the new champion in by themselves.
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
        target = get_version(client, name, version)
    current = by_alias(client, name, settings.champion_alias)
    if current is not None and current.version == target.version:
        raise RolloutError(f"version {target.version} of model '{name}' is already the champion")
    require_gate_passed(target, force=force)
    if current is not None:
        client.set_model_version_tag(name, target.version, PREVIOUS_CHAMPION_TAG, current.version)
    elif PREVIOUS_CHAMPION_TAG in target.tags:
        # Left from an earlier promotion of this version: rolling back to it would be wrong now.
        client.delete_model_version_tag(name, target.version, PREVIOUS_CHAMPION_TAG)
    ended = serving_state(client, settings).active_rollout
    set_alias(client, target, settings.champion_alias)
    clear_rollout(client, settings)
    return ChampionChange(
        previous=current,
        champion=get_version(client, name, target.version),
        ended_rollout=ended,
    )


def rollback(client: MlflowClient, settings: Settings) -> ChampionChange:
    """Undo the last change: end a canary or shadow rollout, else restore the previous champion.

    During a rollout the champion has not changed yet, so rolling back ends
    the rollout and the champion serves every request again. Otherwise the
    champion alias moves back to the version the current champion replaced;
    each version keeps its own `previous_champion` tag, so rolling back again
    goes one more promotion back.
    """
    name = settings.model_name
    current = by_alias(client, name, settings.champion_alias)
    if current is None:
        raise RolloutError(
            f"no version of model '{name}' has the alias '{settings.champion_alias}': "
            "nothing to roll back"
        )
    state = serving_state(client, settings)
    if state.active_rollout is not None:
        clear_rollout(client, settings)
        return ChampionChange(
            previous=current, champion=current, ended_rollout=state.active_rollout
        )
    previous = current.tags.get(PREVIOUS_CHAMPION_TAG)
    if not previous:
        raise RolloutError(
            f"champion version {current.version} of model '{name}' records no previous "
            "champion (it was not promoted with `promote`): nothing to roll back to"
        )
    target = get_version(client, name, previous)
    set_alias(client, target, settings.champion_alias)
    # A stale rollout record (its challenger was retrained or promoted) goes too.
    clear_rollout(client, settings)
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

    # The contract refuses missing values before scoring, so MLflow's hint (inferring
    # the signature, and again logging the example) that integer columns cannot hold
    # them does not apply.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        signature = infer_signature(input_example, model.predict_proba(input_example))
        run_name = f"train-{tags.get('data_version', 'unknown')[:8]}"
        with mlflow.start_run(run_name=run_name):
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
                # Model servers that load the pyfunc (mlflow models serve, MLServer) then
                # answer with class probabilities, as the signature says, not 0/1 labels.
                pyfunc_predict_fn="predict_proba",
                registered_model_name=settings.model_name,
            )
    registered = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(settings.model_name, registered, key, value)
    return _ref(client.get_model_version(settings.model_name, registered))
