"""Scoring with the champion model, without any web framework.

The service wraps a `Predictor`; tests and notebooks use it directly. It
resolves ``models:/<name>@<champion alias>`` through ``io.registry``, looks
customers up in the online feature store, and swaps in a new champion when the
alias moves (`reload`, or a `ChampionPoller` calling it on a timer).

During a canary or shadow rollout (`jobs.rollout`, recorded in the registry
and picked up the same way) it holds the challenger too: a canary serves the
customers whose bucket falls in its share with the challenger; in shadow mode
the champion answers and `score_shadow` lets the challenger score the same
features afterwards. Without a rollout nothing else is loaded or computed.

With ``predictor_url`` set (the `transformer` command) no model is loaded here:
the champion is a `RemoteModel` (see `scorers`) scored over V2 on that server,
and ``shadow_url`` names a second one that scores copies of requests. The
platform splits traffic between versions there, so the registry is not read;
`reload` re-reads the version the server reports.

MLflow and scikit-learn load when the first model does, tritonclient when the
first V2 client does.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..core.model import DECISION_THRESHOLD
from ..core.schema import FEATURE_NAMES
from ..io.feature_source import open_feature_source
from .deployment import Deployment, from_registry, from_servers
from .routing import customer_key, row_key, to_challenger
from .scorers import (
    ModelServerRefusedError,
    ModelServerUnavailableError,
    Scorer,
    ServingError,
    V2Model,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ..config import Settings
    from ..io import registry

# Scoring over V2 raises the two ModelServer errors: callers catch them from here too.
__all__ = [
    "ChampionPoller",
    "ModelServerRefusedError",
    "ModelServerUnavailableError",
    "NoChampionError",
    "Prediction",
    "Predictor",
    "ServingError",
    "UnknownCustomerError",
    "Variant",
]

log = logging.getLogger(__name__)

# Which model answered: the champion, or the challenger for a canary's share of customers.
Variant = Literal["champion", "challenger"]


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
class Prediction:
    """One scored customer: the decision, its probability, the version and the inputs."""

    prediction: bool
    probability: float
    model_version: str
    # The feature values scored (looked up or given): what the inference log records.
    features: Mapping[str, Any]
    variant: Variant = "champion"
    # In shadow mode: the challenger that is to score the same features (`score_shadow`).
    shadow_model: Scorer | None = field(default=None, repr=False, compare=False)


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
        # Transformer mode: the models are on V2 servers, not loaded here.
        self._server: V2Model | None = None
        self._shadow_server: V2Model | None = None
        if settings.predictor_url:
            self._server = V2Model(
                settings.predictor_url, settings.predictor_model_name or settings.model_name
            )
        if settings.shadow_url:
            if self._server is None:
                raise ValueError(
                    "shadow_url needs predictor_url: in-process shadowing is a rollout"
                )
            self._shadow_server = V2Model(
                settings.shadow_url, settings.shadow_model_name or settings.model_name
            )

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
    def remote(self) -> bool:
        """Whether the champion is scored over V2 (``predictor_url``) instead of here."""
        return self._server is not None

    @property
    def ready(self) -> bool:
        """The champion can score (loaded, or its V2 server ready) and the online features answer."""
        return (
            self._features_open
            and self._current is not None
            and (self._server is None or self._server.ready())
        )

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
        deployment stays in service. In transformer mode it re-reads the
        versions the V2 servers report instead (they hot-reload on their own).
        """
        with self._reload_lock:
            self._open_features()
            previous = self._current
            current = (
                from_servers(self.settings, self._server, self._shadow_server, previous)
                if self._server is not None
                else from_registry(self.settings, previous)
            )
            if current is None:
                return False
            self._current = current
            champion, rollout = current.champion, current.rollout
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
        """The challenger's (or shadow server's) score of a prediction's features, else None.

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
        if rollout is not None and challenger is not None and to_challenger(key, rollout):
            return self._score(challenger, features, "challenger")
        return self._score(current.champion, features, shadow_model=current.shadow)

    @staticmethod
    def _score(
        model: Scorer,
        features: Mapping[str, Any],
        variant: Variant = "champion",
        shadow_model: Scorer | None = None,
    ) -> Prediction:
        probability, version = model.score(features)
        return Prediction(
            prediction=probability >= DECISION_THRESHOLD,
            probability=probability,
            model_version=version,
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
