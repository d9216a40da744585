"""Scoring with the champion model, without any web framework.

The service wraps a `Predictor`; tests and notebooks use it directly. It
resolves ``models:/<name>@<champion alias>`` through ``io.registry``, looks
customers up in the online feature store, and swaps in a new champion when the
alias moves (`reload`, or a `ChampionPoller` calling it on a timer).

During a canary or shadow rollout (`serving.rollout`, recorded in the registry
and picked up the same way) it holds the challenger too: a canary serves the
customers whose bucket falls in its share with the challenger; in shadow mode
the champion answers and `score_shadow` lets the challenger score the same
features afterwards. Without a rollout nothing else is loaded or computed.

Only the service process and tests import this module, so numpy is imported at
module level; MLflow and scikit-learn load when the first model does.
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..core.model import NO_FEATURE_NAMES_WARNING
from ..core.schema import FEATURE_NAMES
from ..io import registry
from ..io.feature_source import open_feature_source
from .rollout import customer_key, row_key, to_challenger

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from sklearn.pipeline import Pipeline

    from ..config import Settings

log = logging.getLogger(__name__)

# Scoring an array instead of a DataFrame is the point (see core.model.to_matrix).
warnings.filterwarnings("ignore", message=NO_FEATURE_NAMES_WARNING, category=UserWarning)

# Probability at or above which a customer counts as churning (as in core.model.evaluate).
THRESHOLD = 0.5

# Which model answered: the champion, or the challenger for a canary's share of customers.
Variant = Literal["champion", "challenger"]


class ServingError(Exception):
    """Base class of the errors a caller can act on."""


class NoChampionError(ServingError):
    """No model version carries the champion alias yet."""

    def __init__(self, model_name: str, alias: str) -> None:
        super().__init__(
            f"no version of model '{model_name}' has the alias '{alias}' yet: "
            "train and promote one, then reload"
        )


class UnknownCustomerError(ServingError, LookupError):
    """The online store holds no (fresh) features for this customer."""

    def __init__(self, customer_id: int) -> None:
        self.customer_id = customer_id
        super().__init__(
            f"customer_id {customer_id} has no features in the online store "
            "(unknown customer, or features older than the TTL)"
        )


@dataclass(frozen=True)
class LoadedModel:
    """A registered version and its pipeline, swapped together so they never disagree."""

    ref: registry.ModelRef
    pipeline: Pipeline


@dataclass(frozen=True)
class Prediction:
    """One scored customer: the decision, its probability, the version and the inputs."""

    prediction: bool
    probability: float
    model_version: str
    # The feature values scored (looked up or given): what the inference log records.
    features: Mapping[str, Any]
    variant: Variant = "champion"
    # In shadow mode: the challenger that is to score the same features (`score_shadow`).
    shadow_model: LoadedModel | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Deployment:
    """What is served, replaced as a whole: the champion and, during a rollout, the challenger."""

    champion: LoadedModel
    challenger: LoadedModel | None = None
    rollout: registry.Rollout | None = None


class Predictor:
    """The champion model and the online features, ready to score one customer at a time."""

    def __init__(
        self,
        settings: Settings,
        on_swap: Callable[[registry.ModelRef | None, registry.ModelRef], None] | None = None,
    ) -> None:
        self.settings = settings
        self.features = open_feature_source(settings)
        # Called under the reload lock after every champion swap, e.g. to update a metric.
        self._on_swap = on_swap
        # Replaced as a whole, never mutated: a reader sees the old or the new deployment.
        self._current: Deployment | None = None
        self._reload_lock = threading.Lock()
        self._features_open = False

    def start(self) -> None:
        """Open the online features and load the champion, if there are any yet.

        One lookup opens the online path: it loads the in-memory view (parquet)
        or connects to the online store (Feast), so the first request is not
        slow. Filling the online store (`materialize`) is the feature
        pipeline's job, not each serving worker's.

        Neither missing features nor a missing champion is an error here: on a
        new stack the service starts before the first training run. It stays
        unready, and each reload tries again.
        """
        self._open_features()
        if not self.reload():
            log.warning(
                "%s", NoChampionError(self.settings.model_name, self.settings.champion_alias)
            )

    def _open_features(self) -> bool:
        if self._features_open:
            return True
        try:
            self.features.online([0])
        # No data written yet (FileNotFoundError) or no definitions registered (RuntimeError).
        except (FileNotFoundError, RuntimeError) as error:
            log.warning("online features not available yet, not ready: %s", error)
            return False
        self._features_open = True
        return True

    @property
    def features_available(self) -> bool:
        return self._features_open

    @property
    def ready(self) -> bool:
        """A champion is loaded and the online features answer: any request can be served."""
        return self._features_open and self._current is not None

    @property
    def model_version(self) -> str | None:
        """The champion's version (None before any)."""
        current = self._current
        return current.champion.ref.version if current else None

    @property
    def rollout(self) -> registry.Rollout | None:
        """The canary or shadow rollout being served, if any."""
        current = self._current
        return current.rollout if current else None

    def reload(self) -> bool:
        """Re-read the champion alias and the rollout; swap in whatever changed.

        Returns True when what is served changed: a new champion, or a canary
        or shadow rollout that started, moved a step or ended. Models already
        loaded are reused (a promoted challenger becomes the champion without
        loading again). Predictions keep using the previous deployment while a
        new model loads. If the champion alias has been removed, the current
        deployment stays in service.
        """
        with self._reload_lock:
            self._open_features()
            client = registry.connect(self.settings)
            state = registry.serving_state(client, self.settings)
            rollout = state.active_rollout
            previous = self._current
            if state.champion is None or (
                previous is not None
                and previous.champion.ref.version == state.champion
                and previous.rollout == rollout
            ):
                return False
            loaded = {
                model.ref.version: model
                for model in ((previous.champion, previous.challenger) if previous else ())
                if model is not None
            }

            def model(version: str) -> LoadedModel:
                if version in loaded:
                    return loaded[version]
                ref = registry.get_version(client, self.settings.model_name, version)
                return LoadedModel(ref, registry.load_model(ref))

            champion = model(state.champion)
            challenger = model(rollout.challenger) if rollout is not None else None
            self._current = Deployment(champion, challenger, rollout)
            log.info(
                "serving %s version %s (was %s)%s",
                champion.ref.name,
                champion.ref.version,
                previous.champion.ref.version if previous else "none",
                f", {rollout.describe()}" if rollout is not None else "",
            )
            if self._on_swap is not None and (
                previous is None or previous.champion is not champion
            ):
                self._on_swap(previous.champion.ref if previous else None, champion.ref)
            return True

    def predict_customer(self, customer_id: int) -> Prediction:
        """Score a customer from the latest features in the online store."""
        current = self._deployment()
        (row,) = self.features.online([customer_id])
        if row is None or any(row.get(name) is None for name in FEATURE_NAMES):
            raise UnknownCustomerError(customer_id)
        return self._predict(current, row, customer_key(customer_id))

    def predict_features(self, features: Mapping[str, Any]) -> Prediction:
        """Score a full feature row given by the caller (already validated)."""
        current = self._deployment()
        canary = current.rollout is not None and current.rollout.mode == "canary"
        # Only a canary needs the row's key; it costs a few microseconds.
        return self._predict(current, features, row_key(features) if canary else "")

    def score_shadow(self, prediction: Prediction) -> Prediction | None:
        """The challenger's score of a shadow-mode prediction's features, else None.

        The service calls it after the response is sent, so the challenger
        never delays nor changes an answer.
        """
        if prediction.shadow_model is None:
            return None
        return self._score(prediction.shadow_model, prediction.features, "challenger")

    def _deployment(self) -> Deployment:
        current = self._current
        if current is None:
            raise NoChampionError(self.settings.model_name, self.settings.champion_alias)
        return current

    def _predict(self, current: Deployment, features: Mapping[str, Any], key: str) -> Prediction:
        rollout, challenger = current.rollout, current.challenger
        if rollout is None or challenger is None:
            return self._score(current.champion, features)
        if rollout.mode == "shadow":
            return self._score(current.champion, features, shadow_model=challenger)
        if to_challenger(key, rollout):
            return self._score(challenger, features, "challenger")
        return self._score(current.champion, features)

    @staticmethod
    def _score(
        model: LoadedModel,
        features: Mapping[str, Any],
        variant: Variant = "champion",
        shadow_model: LoadedModel | None = None,
    ) -> Prediction:
        from sklearn import config_context

        # The pipeline selects columns by position: one object row in contract order.
        matrix = np.array([[features[name] for name in FEATURE_NAMES]], dtype=object)
        # Inputs are validated already; skipping sklearn's checks saves ~0.3 ms a row.
        with config_context(assume_finite=True, skip_parameter_validation=True):
            probability = float(model.pipeline.predict_proba(matrix)[0, 1])
        return Prediction(
            prediction=probability >= THRESHOLD,
            probability=probability,
            model_version=model.ref.version,
            features=features,
            variant=variant,
            shadow_model=shadow_model,
        )


class ChampionPoller:
    """Calls `Predictor.reload` every `interval` seconds in a daemon thread.

    A new champion, or a rollout step, therefore reaches a running service
    with no restart and no code change. A failed check (registry unreachable)
    is logged and retried at the next tick; the current model keeps serving.
    """

    def __init__(self, predictor: Predictor, interval: float) -> None:
        self.predictor = predictor
        self.interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="champion-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.predictor.reload()
            except Exception:
                log.exception(
                    "checking for a new champion failed; still serving version %s",
                    self.predictor.model_version,
                )
