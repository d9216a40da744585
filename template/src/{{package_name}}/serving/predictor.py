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

With ``predictor_url`` set (the `transformer` command: KServe's transformer, the
Seldon front Deployment) no model is loaded here: the champion is a
`RemoteModel` scored over V2 on that server, and ``shadow_url`` names a second
one that scores copies of requests. The platform splits traffic between
versions there, so the registry is not read; `reload` re-reads the version the
server reports. Both kinds of model are a `Scorer`, so scoring is one path.

Only the service process and tests import this module, so numpy is imported at
module level; MLflow and scikit-learn load when the first model does, and
tritonclient when the first V2 client does.
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

import numpy as np

from ..core.model import DECISION_THRESHOLD, NO_FEATURE_NAMES_WARNING
from ..core.schema import FEATURE_NAMES, FEATURES
from ..io import registry
from ..io.feature_source import open_feature_source
from .routing import customer_key, row_key, to_challenger
from .v2_client import V2Client, V2RequestError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from sklearn.pipeline import Pipeline

    from ..config import Settings

log = logging.getLogger(__name__)

# Scoring an array instead of a DataFrame is the point (see core.model.to_matrix).
warnings.filterwarnings("ignore", message=NO_FEATURE_NAMES_WARNING, category=UserWarning)

T = TypeVar("T")

# Which model answered: the champion, or the challenger for a canary's share of customers.
Variant = Literal["champion", "challenger"]

# Seconds a V2 call may take: under BentoML's 10 s request timeout, so a stuck
# model server gets the service's own 503 instead of a timeout.
V2_TIMEOUT = 5.0
# What a remote model's version is called when neither its server nor the settings tell.
UNKNOWN_VERSION = "unknown"
# A row the contract accepts (each feature at its minimum, or its first category): what
# asks a V2 server that names its version only in answers (MLServer) which one it serves.
PROBE_ROW: dict[str, Any] = {
    spec.name: spec.categories[0] if spec.is_categorical else (spec.minimum or 0)
    for spec in FEATURES
}


class ServingError(Exception):
    """Base class of the errors a caller can act on."""


class NoChampionError(ServingError):
    """No model version carries the champion alias yet."""

    def __init__(self, model_name: str, alias: str) -> None:
        super().__init__(
            f"no version of model '{model_name}' has the alias '{alias}' yet: "
            "train and promote one, then reload"
        )


class ModelServerError(ServingError):
    """A V2 model server (``predictor_url``, ``shadow_url``) failed a request."""


class ModelServerUnavailableError(ModelServerError):
    """The model server is down, unreachable, too slow, or its model is not loaded: retry later."""


class ModelServerRefusedError(ModelServerError):
    """The model server refused a request the service had validated, or answered nonsense."""


class UnknownCustomerError(ServingError, LookupError):
    """The online store holds no (fresh) features for this customer."""

    def __init__(self, customer_id: int) -> None:
        self.customer_id = customer_id
        super().__init__(
            f"customer_id {customer_id} has no features in the online store "
            "(unknown customer, or features older than the TTL)"
        )


class Scorer(Protocol):
    """A model version that scores one feature row, here (`LoadedModel`) or over V2 (`RemoteModel`)."""

    @property
    def ref(self) -> registry.ModelRef: ...

    def score(self, features: Mapping[str, Any]) -> tuple[float, str]:
        """The churn probability of one row, and the version that gave it."""
        ...


@dataclass(frozen=True)
class LoadedModel:
    """A registered version and its pipeline, swapped together so they never disagree."""

    ref: registry.ModelRef
    pipeline: Pipeline

    def score(self, features: Mapping[str, Any]) -> tuple[float, str]:
        from sklearn import config_context

        # The pipeline selects columns by position: one object row in contract order.
        matrix = np.array([[features[name] for name in FEATURE_NAMES]], dtype=object)
        # Inputs are validated already; skipping sklearn's checks saves ~0.3 ms a row.
        with config_context(assume_finite=True, skip_parameter_validation=True):
            return float(self.pipeline.predict_proba(matrix)[0, 1]), self.ref.version


def v2_address(url: str) -> str:
    """``<host>:<port>`` of a V2 server's URL ``http://<host>:<port>``: what tritonclient takes."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    # tritonclient speaks plain HTTP here; in a cluster the mesh or sidecar adds TLS.
    if parts.scheme != "http" or not parts.hostname or parts.path.strip("/"):
        raise ValueError(f"a V2 server URL is http://<host>[:<port>], not {url!r}")
    return parts.netloc


class V2Model:
    """One model on a V2 server, with a client per thread (tritonclient's are not thread-safe)."""

    def __init__(self, url: str, model_name: str) -> None:
        self.address = v2_address(url)
        self.model_name = model_name
        self._local = threading.local()

    def __str__(self) -> str:
        return f"model '{self.model_name}' at {self.address}"

    def _client(self) -> V2Client:
        client: V2Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = V2Client(
                self.address, self.model_name, timeout=V2_TIMEOUT
            )
        return client

    def _call(self, request: Callable[[V2Client], T]) -> T:
        try:
            return request(self._client())
        # Refused, reset or timed out: the server is not there (socket.timeout is an OSError).
        except OSError as error:
            raise ModelServerUnavailableError(f"{self} did not answer: {error}") from None
        except V2RequestError as error:
            # 5xx, or 404 while the model is (re)loading: the server's trouble, not the request's.
            if error.status >= 500 or error.status == 404:
                raise ModelServerUnavailableError(f"{self}: {error}") from None
            raise ModelServerRefusedError(f"{self} refused the request: {error}") from None

    def ready(self) -> bool:
        try:
            return self._call(V2Client.ready)
        except ModelServerError:
            return False

    def version(self) -> str | None:
        """The version the server serves now, if it tells: in its metadata, else in an answer."""
        versions = self._call(V2Client.metadata).get("versions") or []
        if versions:
            return str(versions[-1])
        return self._call(lambda client: client.score([PROBE_ROW])).model_version or None

    def score(self, features: Mapping[str, Any], fallback_version: str) -> tuple[float, str]:
        scores = self._call(lambda client: client.score([features]))
        # The answer names the version that scored it, when the server knows it.
        return scores.churn_probability[0], scores.model_version or fallback_version


@dataclass(frozen=True)
class RemoteModel:
    """A model scored over V2, and its version as last read from the server."""

    ref: registry.ModelRef
    server: V2Model = field(repr=False)

    def score(self, features: Mapping[str, Any]) -> tuple[float, str]:
        return self.server.score(features, self.ref.version)


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


@dataclass(frozen=True)
class Deployment:
    """What is served, replaced as a whole: the champion and, during a rollout, the challenger."""

    champion: Scorer
    challenger: Scorer | None = None
    rollout: registry.Rollout | None = None
    # Scores a copy of every request after the answer: the challenger in shadow mode.
    shadow: Scorer | None = None


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
            current = self._from_servers(previous) if self.remote else self._from_registry(previous)
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

    def _from_registry(self, previous: Deployment | None) -> Deployment | None:
        """The champion and rollout the registry names now; None if nothing changed."""
        client = registry.connect(self.settings)
        state = registry.serving_state(client, self.settings)
        rollout = state.active_rollout
        if state.champion is None or (
            previous is not None
            and previous.champion.ref.version == state.champion
            and previous.rollout == rollout
        ):
            return None
        loaded = {
            model.ref.version: model
            for model in ((previous.champion, previous.challenger) if previous else ())
            if model is not None
        }

        def model(version: str) -> Scorer:
            if version in loaded:
                return loaded[version]
            ref = registry.get_version(client, self.settings.model_name, version)
            return LoadedModel(ref, registry.load_model(ref))

        champion = model(state.champion)
        challenger = model(rollout.challenger) if rollout is not None else None
        shadow = challenger if rollout is not None and rollout.mode == "shadow" else None
        return Deployment(champion, challenger, rollout, shadow)

    def _from_servers(self, previous: Deployment | None) -> Deployment | None:
        """The V2 models with the versions their servers report now; None if none changed."""
        assert self._server is not None  # transformer mode
        champion = self._remote_model(
            self._server,
            previous.champion if previous else None,
            self.settings.predictor_model_version or UNKNOWN_VERSION,
        )
        shadow = None
        if self._shadow_server is not None:
            shadow = self._remote_model(
                self._shadow_server, previous.shadow if previous else None, UNKNOWN_VERSION
            )
        if previous is not None and (champion, shadow) == (previous.champion, previous.shadow):
            return None
        return Deployment(champion, shadow=shadow)

    def _remote_model(self, server: V2Model, previous: Scorer | None, fallback: str) -> Scorer:
        try:
            version = server.version() or fallback
        except ModelServerError as error:
            # Not an outage of this service: requests get 503 until the server is back.
            log.warning("cannot read the served version, keeping the last one: %s", error)
            if previous is not None:
                return previous
            version = fallback
        # The V2 server knows its model's name and version only.
        model = RemoteModel(registry.ModelRef(server.model_name, version, "", {}), server)
        # The same object while nothing changed: a swap is noticed by identity.
        return previous if previous == model else model

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
