"""The model service: BentoML over the champion model.

Endpoints: ``POST /predict`` (by ``customer_id`` or by a full ``features``
row; every answer carries a ``request_id`` and is recorded in the inference
log), ``POST /feedback`` (the true outcome for a ``request_id``), ``POST
/reload``, and BentoML's own ``/livez``, ``/readyz`` (ready once a champion is
loaded) and ``/metrics``. Start it with ``serving.server.start`` or
``bentoml serve <package>.serving.service:ModelService``.

Rollouts (``jobs.rollout``) need no endpoint: the service follows the
registry. During a canary the answer's ``variant`` and ``model_version`` say
which model served it; in shadow mode the answer is the champion's and the
challenger scores the same features after it is sent.

In transformer mode (``predictor_url``, the `transformer` command) the service
still validates, looks customers up and logs, but scores over V2 on that model
server; a model server that is down or slow makes ``/predict`` answer 503 and
``/readyz`` unready, never 500.

Only the server process imports this module, so BentoML is imported at top
level. Configuration comes from the environment through `Settings`, read once
at import because the worker count is part of the service definition.
"""

import asyncio
import contextlib
import ctypes
import gc
import logging

import bentoml
from pydantic import ValidationError
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse

from ..config import Settings
from ..io.inference_log import InferenceLog, InferenceLogFull, open_inference_log
from . import metrics
from .errors import error_response
from .lifetime import end_with_parent
from .limits import RequestGuard
from .predictor import (
    ChampionPoller,
    ModelServerRefusedError,
    ModelServerUnavailableError,
    NoChampionError,
    Prediction,
    Predictor,
    UnknownCustomerError,
)
from .schemas import (
    FeatureRow,
    FeedbackRequest,
    FeedbackResponse,
    PredictRequest,
    PredictResponse,
    ReloadResponse,
)

# Model swaps and start-up at INFO like BentoML's own messages (the root logger stays at WARNING).
logging.getLogger(__name__.partition(".")[0]).setLevel(logging.INFO)
log = logging.getLogger(__name__)

SETTINGS = Settings()


def release_freed_memory() -> None:
    """Return the heap freed after start-up to the OS; glibc would keep it for reuse.

    Loading the registry store, the features and the model leaves several MB
    of garbage behind: trimming it keeps the steady-state worker smaller.
    """
    gc.collect()
    # Only glibc has malloc_trim; elsewhere (macOS, musl) there is nothing to do.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class DropValidationTracebacks(logging.Filter):
    """Keep rejected requests out of the error log.

    BentoML logs every exception of an endpoint with its traceback, including
    the pydantic errors it answers with 400. Those are the client's mistake: the
    client is told which field is wrong and ``errors_total`` counts them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ValidationError))


# The logger BentoML's endpoint wrapper reports exceptions to (bentoml 1.4).
logging.getLogger("bentoml._internal.server.http_app").addFilter(DropValidationTracebacks())


def log_full_response(error: InferenceLogFull) -> JSONResponse:
    """503: a request the inference log cannot record is not served (nothing goes unlogged)."""
    response = error_response(503, "log_full", str(error))
    response.headers["Retry-After"] = "1"
    return response


@bentoml.service(
    workers=SETTINGS.workers,
    # A request that takes seconds is broken, not slow: fail it instead of queueing behind it.
    traffic={"timeout": 10},
    # One log line per request costs more than the prediction; metrics cover the traffic.
    logging={"access": {"enabled": False}},
    # Tracing samples nothing unless configured, yet its middleware costs ~0.3 ms a
    # request (a quarter of a prediction). Drop this to trace predictions.
    tracing={"excluded_urls": ["/predict"]},
)
class ModelService:
    """Churn predictions from the registered champion, by customer id or feature row."""

    def __init__(self) -> None:
        # Instances live in the workers: a worker must not outlive a killed arbiter.
        end_with_parent()
        self.predictor = Predictor(SETTINGS, on_swap=metrics.model_swapped)
        self.predictor.start()
        self.inference_log = open_inference_log(SETTINGS, on_write=metrics.inference_log_written)
        # What a killed worker answered but never wrote: stored before this one serves.
        self.inference_log.recover()
        release_freed_memory()
        self.poller: ChampionPoller | None = None
        if SETTINGS.reload_interval > 0:
            self.poller = ChampionPoller(self.predictor, SETTINGS.reload_interval)
            self.poller.start()

    async def __is_ready__(self) -> bool:
        # BentoML answers /readyz with 503 until this is true.
        if self.predictor.remote:
            # It asks the model server: off the event loop, which a slow answer would stall.
            return await asyncio.to_thread(lambda: self.predictor.ready)
        return self.predictor.ready

    @bentoml.on_shutdown
    def shut_down(self) -> None:
        # BentoML runs this after the last request is answered (SIGTERM included):
        # closing the log then writes every prediction this worker served. The
        # timeout only matters if the store is down; it fits in Docker's 10 s grace.
        if self.poller is not None:
            self.poller.stop()
        self.inference_log.close(timeout=8.0)

    # Async on purpose: scoring takes about a millisecond, less than handing it to a thread.
    @bentoml.api(input_spec=PredictRequest, output_spec=PredictResponse)  # ty: ignore[invalid-argument-type]  # pydantic model, converted by BentoML
    async def predict(
        self, customer_id: int | None = None, features: FeatureRow | None = None
    ) -> PredictResponse | JSONResponse:
        """Predict whether a customer churns, with the probability and the model that served it."""
        try:
            if customer_id is not None:
                result = self.predictor.predict_customer(customer_id)
            else:
                assert features is not None  # PredictRequest guarantees exactly one input
                result = self.predictor.predict_features(features.model_dump())
        except UnknownCustomerError as error:
            return error_response(404, "unknown_customer", str(error), field="customer_id")
        except NoChampionError as error:
            return error_response(503, "no_model", str(error))
        except ModelServerUnavailableError as error:
            response = error_response(503, "model_server_unavailable", str(error))
            response.headers["Retry-After"] = "1"
            return response
        except ModelServerRefusedError as error:
            return error_response(502, "model_server_refused", str(error))
        row = self.inference_log.prediction_row(
            model_version=result.model_version,
            features=result.features,
            probability=result.probability,
            prediction=result.prediction,
            customer_id=customer_id,
            variant=result.variant,
        )
        try:
            await self.inference_log.record_async(row)
        except InferenceLogFull as error:
            return log_full_response(error)
        metrics.count_prediction(
            result.prediction, "online" if customer_id is not None else "request", result.variant
        )
        response = PredictResponse(
            customer_id=customer_id,
            prediction=result.prediction,
            probability=result.probability,
            model_version=result.model_version,
            variant=result.variant,
            request_id=row["request_id"],
        )
        if result.shadow_model is None:
            return response
        # Shadow mode: Starlette runs the task once the answer is sent, so the
        # challenger adds nothing to this request's latency.
        return JSONResponse(
            response.model_dump(mode="json"),
            background=BackgroundTask(self.score_shadow, result, row["request_id"]),
        )

    async def score_shadow(self, served: Prediction, request_id: str) -> None:
        """Score a served request with the challenger; log and count the comparison."""
        try:
            shadow = self.predictor.score_shadow(served)
        except Exception:
            # The challenger is on trial: its failure must not touch serving.
            log.exception("the shadow model failed to score request %s", request_id)
            metrics.count_shadow("failed")
            return
        if shadow is None:
            return
        self.inference_log.record_shadow(request_id, shadow.model_version, shadow.probability)
        metrics.count_shadow("same" if shadow.prediction == served.prediction else "different")

    @bentoml.api(route="/feedback", input_spec=FeedbackRequest, output_spec=FeedbackResponse)  # ty: ignore[invalid-argument-type]  # pydantic model, converted by BentoML
    async def feedback(self, request_id: str, churned: bool) -> JSONResponse:
        """Record the true outcome of a served prediction; 202 once it is queued.

        An unknown request id is accepted too, not answered 404: the prediction
        may still be queued in this or another worker, and looking it up would
        cost a store query per label. Such a label never joins a prediction.
        """
        row = InferenceLog.feedback_row(request_id, churned)
        try:
            await self.inference_log.record_async(row, "feedback")
        except InferenceLogFull as error:
            return log_full_response(error)
        accepted = FeedbackResponse(request_id=request_id, churned=churned)
        return JSONResponse(accepted.model_dump(), status_code=202)

    @bentoml.api(route="/reload")
    def reload(self) -> ReloadResponse:
        """Load the current champion and rollout now instead of at the next poll (this worker only)."""
        reloaded = self.predictor.reload()
        return ReloadResponse(reloaded=reloaded, model_version=self.predictor.model_version)


ENDPOINTS = ("/predict", "/feedback", "/reload")
# The first is the outermost: the requests the guard refuses are timed and counted too.
# BentoML's AsgiMiddleware protocol takes `**options: Any`, which no class whose options
# are named (as these are) matches, hence the two ignores.
ModelService.add_asgi_middleware(metrics.RequestMetrics, paths=ENDPOINTS)  # ty: ignore[invalid-argument-type]  # options are named
ModelService.add_asgi_middleware(
    RequestGuard,  # ty: ignore[invalid-argument-type]  # options are named
    paths=ENDPOINTS,
    max_bytes=SETTINGS.max_request_bytes,
)
