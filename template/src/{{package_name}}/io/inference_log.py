"""The inference log: every prediction the service served, and the labels that come later.

One row per served prediction: ``request_id`` (returned to the client, who
quotes it when the true outcome is known), ``served_at`` (UTC), the model
version and ``variant`` that served it ("champion", or "challenger" during a
canary), ``customer_id`` when the request gave one, the feature values the
model scored, the probability and the decision. Feedback rows hold a
``request_id`` and its label; shadow rows the challenger's version and
probability for a request it scored in shadow mode. Both arrive after the
response, so they are rows of their own. `InferenceLog.read_window` joins the
three: it is the "current" data of the drift and quality check, and the
evidence of a rollout's step checks.

Off the request path: `InferenceLog.record` appends the row to the worker's
journal and puts it on a bounded queue; a writer thread writes batches of up to `BATCH_SIZE` rows, at the latest
`FLUSH_INTERVAL` seconds after the oldest unwritten row arrived.

Bounded memory and no silent loss: when the queue is full (the store is slower
than the traffic, or down), `record` waits for room for up to `ENQUEUE_TIMEOUT`
seconds, then raises `InferenceLogFull` and the service answers 503 *instead of
serving the prediction*. So every prediction a client received is in the log;
none is ever dropped to make room. A failed write is retried, with backoff, with
the same rows. `close` writes everything still queued: the service calls it on
shutdown, so a clean stop (SIGTERM) loses nothing, and neither does a ``kill -9``
of the serve process: its workers get SIGTERM from the kernel and stop the same
way (`serving.lifetime`). Nor does a killed worker (SIGKILL, out of memory): what
it answered but had not written is in its journal, which the next worker to start
writes to the store (`InferenceLog.recover`, `inference_log_journal`). Only a
machine that goes down can lose rows: those the kernel had not flushed to disk.

Two stores, chosen by ``Settings.inference_log_url``: empty for parquet files
under ``<home>/inference_log/`` (`ParquetStore`), ``postgresql+psycopg://...``
for Postgres tables (`PostgresStore`).

This module is the log's public face: the writer is in `inference_log_writer`,
its journal in `inference_log_journal`, the stores in `inference_log_parquet` and
`inference_log_postgres`, what they share in `inference_log_store`. The service
imports it, so pandas, pyarrow and psycopg are imported inside the functions that
need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .inference_log_parquet import ParquetStore
from .inference_log_postgres import PostgresStore
from .inference_log_store import (
    DEFAULT_VARIANT,
    FEEDBACK_COLUMNS,
    FEEDBACK_TABLE,
    JOINED_COLUMNS,
    PREDICTION_COLUMNS,
    PREDICTIONS_TABLE,
    RECEIVED_AT,
    SCORED_AT,
    SERVED_AT,
    SHADOW_COLUMNS,
    SHADOW_TABLE,
    VARIANT,
    Kind,
    Row,
    Store,
    new_request_id,
)
from .inference_log_writer import (
    BATCH_SIZE,
    ENQUEUE_TIMEOUT,
    FLUSH_INTERVAL,
    MAX_QUEUE,
    MAX_RETRY_DELAY,
    InferenceLog,
    InferenceLogClosed,
    InferenceLogFull,
)

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "BATCH_SIZE",
    "DEFAULT_VARIANT",
    "ENQUEUE_TIMEOUT",
    "FEEDBACK_COLUMNS",
    "FEEDBACK_TABLE",
    "FLUSH_INTERVAL",
    "JOINED_COLUMNS",
    "MAX_QUEUE",
    "MAX_RETRY_DELAY",
    "PREDICTIONS_TABLE",
    "PREDICTION_COLUMNS",
    "RECEIVED_AT",
    "SCORED_AT",
    "SERVED_AT",
    "SHADOW_COLUMNS",
    "SHADOW_TABLE",
    "VARIANT",
    "InferenceLog",
    "InferenceLogClosed",
    "InferenceLogFull",
    "Kind",
    "ParquetStore",
    "PostgresStore",
    "Row",
    "Store",
    "new_request_id",
    "open_inference_log",
    "open_store",
]


def open_store(settings: Settings) -> Store:
    """The store ``settings.inference_log_url`` names: parquet under `home`, or Postgres."""
    url = settings.inference_log_url
    if not url:
        return ParquetStore(settings.home / "inference_log")
    if url.startswith("postgresql"):
        return PostgresStore(url)
    raise ValueError(
        f"inference_log_url must be empty (parquet files under home) or a "
        f"postgresql+psycopg:// URL, not {url!r}"
    )


def open_inference_log(settings: Settings, **options: Any) -> InferenceLog:
    """An `InferenceLog` on the configured store, journaling under ``<home>/inference_log/
    journal/`` (a file appears only once it records); `options` go to `InferenceLog`."""
    journal_dir = settings.home / "inference_log" / "journal"
    return InferenceLog(open_store(settings), journal_dir=journal_dir, **options)
