"""The model versions a `Predictor` scores with: loaded here, or on a V2 model server.

A `LoadedModel` is a registered version and its pipeline, in this process. A
`RemoteModel` is scored over V2 (the `transformer` command: KServe's
transformer, the Seldon front Deployment) on the server ``predictor_url`` or
``shadow_url`` names; `V2Model` keeps one tritonclient client per thread and
turns its failures into `ModelServerUnavailableError` (retry later) or
`ModelServerRefusedError`. Both kinds are a `Scorer`, so scoring is one path.

numpy is imported at module level (only the service process and tests import
this); scikit-learn loads with the first model, tritonclient with the first client.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

import numpy as np

from ..core.model import NO_FEATURE_NAMES_WARNING
from ..core.schema import FEATURE_NAMES, FEATURES
from .v2_client import V2Client, V2RequestError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from sklearn.pipeline import Pipeline

    from ..io import registry

# Scoring an array instead of a DataFrame is the point (see core.model.to_matrix).
warnings.filterwarnings("ignore", message=NO_FEATURE_NAMES_WARNING, category=UserWarning)

T = TypeVar("T")

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


class ModelServerError(ServingError):
    """A V2 model server (``predictor_url``, ``shadow_url``) failed a request."""


class ModelServerUnavailableError(ModelServerError):
    """The model server is down, unreachable, too slow, or its model is not loaded: retry later."""


class ModelServerRefusedError(ModelServerError):
    """The model server refused a request the service had validated, or answered nonsense."""


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
