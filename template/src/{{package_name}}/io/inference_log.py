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

Off the request path: `InferenceLog.record` only puts the row on a bounded
queue; a writer thread writes batches of up to `BATCH_SIZE` rows, at the latest
`FLUSH_INTERVAL` seconds after the oldest unwritten row arrived.

Bounded memory and no silent loss: when the queue is full (the store is slower
than the traffic, or down), `record` waits for room for up to `ENQUEUE_TIMEOUT`
seconds, then raises `InferenceLogFull` and the service answers 503 *instead of
serving the prediction*. So every prediction a client received is in the log;
none is ever dropped to make room. A failed write is retried, with backoff, with
the same rows. `close` writes everything still queued: the service calls it on
shutdown, so a clean stop (SIGTERM) loses nothing. A killed process (SIGKILL,
out of memory) loses what it had not written yet: at most `MAX_QUEUE` rows plus
one batch, usually the last `FLUSH_INTERVAL` seconds of traffic.

Two stores, chosen by ``Settings.inference_log_url``:

- empty: parquet files under ``<home>/inference_log/``, one file per batch with
  a unique name, written under a hidden temporary name and renamed into place,
  so several service workers write side by side and readers never see half a
  file. Predictions and shadow scores are partitioned by day
  (``predictions/date=YYYY-MM-DD/``) so a window reads only the days it covers.
  Files from before a column existed read it as missing (``variant``: champion).
- ``postgresql+psycopg://...``: the tables `PREDICTIONS_TABLE`,
  `FEEDBACK_TABLE` and `SHADOW_TABLE`, created if missing; columns added since
  are added to an existing table. Inserts skip request ids already present, so
  retrying a batch whose commit was lost cannot duplicate rows.

The service imports this module, so pandas, pyarrow and psycopg are imported
inside the functions that need them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ..core.schema import ENTITY, FEATURE_NAMES, FEATURES, LABEL

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    import pandas as pd
    import psycopg
    import pyarrow as pa
    import pyarrow.dataset as ds

    from ..config import Settings

log = logging.getLogger(__name__)

# Rows per write: one parquet file or one Postgres transaction.
BATCH_SIZE = 500
# Seconds a recorded row may wait before its batch is written anyway.
FLUSH_INTERVAL = 2.0
# Rows held in memory at most (a few MB): beyond that, `record` waits.
MAX_QUEUE = 10_000
# Seconds `record` waits for room before refusing the request.
ENQUEUE_TIMEOUT = 5.0
# Longest wait between two attempts at a failed write.
MAX_RETRY_DELAY = 30.0

SERVED_AT = "served_at"
RECEIVED_AT = "received_at"
SCORED_AT = "scored_at"
VARIANT = "variant"
# Rows logged before canaries existed were all served by the champion.
DEFAULT_VARIANT = "champion"
PREDICTION_COLUMNS: tuple[str, ...] = (
    "request_id",
    SERVED_AT,
    "model_version",
    VARIANT,
    ENTITY,
    *FEATURE_NAMES,
    "probability",
    "prediction",
)
FEEDBACK_COLUMNS: tuple[str, ...] = ("request_id", LABEL, RECEIVED_AT)
SHADOW_COLUMNS: tuple[str, ...] = ("request_id", "shadow_version", "shadow_probability", SCORED_AT)
# What `read_window` adds to the prediction columns: the label and the shadow score, or NA.
JOINED_COLUMNS: tuple[str, ...] = (LABEL, "shadow_version", "shadow_probability")
PREDICTIONS_TABLE = "inference_log"
FEEDBACK_TABLE = "inference_feedback"
SHADOW_TABLE = "inference_shadow"

Kind = Literal["prediction", "feedback", "shadow"]
Row = dict[str, Any]

# Contract dtype -> the Python type a row holds, and the Postgres column type.
_PYTHON_TYPES: dict[str, Callable[[Any], Any]] = {"int64": int, "float64": float, "string": str}
_SQL_TYPES = {"int64": "bigint", "float64": "double precision", "string": "text"}


class InferenceLogFull(RuntimeError):
    """The queue stayed full for the whole wait: the row was not accepted."""


class InferenceLogClosed(RuntimeError):
    """`record` after `close`: the writer is gone."""


def new_request_id() -> str:
    return uuid.uuid4().hex


def _utc(moment: datetime) -> datetime:
    # A naive datetime is taken as UTC, like every timestamp the log writes.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Store(Protocol):
    """Where batches go and windows come from."""

    def write_predictions(self, rows: list[Row]) -> None: ...
    def write_feedback(self, rows: list[Row]) -> None: ...
    def write_shadow(self, rows: list[Row]) -> None: ...
    def read_window(self, start: datetime, end: datetime) -> pd.DataFrame: ...
    def count(self) -> int: ...
    def close(self) -> None: ...


def _window_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Predictions joined with labels and shadow scores, in serving order and contract types."""
    import pandas as pd

    frame[SERVED_AT] = pd.to_datetime(frame[SERVED_AT], utc=True)
    frame[VARIANT] = frame[VARIANT].fillna(DEFAULT_VARIANT).astype(str)
    frame[ENTITY] = frame[ENTITY].astype("Int64")
    frame["prediction"] = frame["prediction"].astype(bool)
    frame[LABEL] = frame[LABEL].astype("boolean")
    frame["shadow_version"] = frame["shadow_version"].astype("string")
    frame["shadow_probability"] = frame["shadow_probability"].astype("Float64")
    return frame.sort_values(SERVED_AT, kind="stable").reset_index(drop=True)


def _by_day(rows: list[Row], column: str, directory: Path) -> dict[Path, list[Row]]:
    """Rows grouped into the ``date=<day>`` partitions of `directory`, by `column`'s day."""
    parts: dict[Path, list[Row]] = {}
    for row in rows:
        parts.setdefault(directory / f"date={row[column].date().isoformat()}", []).append(row)
    return parts


class ParquetStore:
    """Parquet files under `directory`: ``predictions/date=<day>/``, ``feedback/``
    and ``shadow/date=<day>/``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.predictions_dir = directory / "predictions"
        self.feedback_dir = directory / "feedback"
        self.shadow_dir = directory / "shadow"

    @staticmethod
    def prediction_schema() -> pa.Schema:
        import pyarrow as pa

        types = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}
        return pa.schema(
            [
                ("request_id", pa.string()),
                (SERVED_AT, pa.timestamp("us", tz="UTC")),
                ("model_version", pa.string()),
                (VARIANT, pa.string()),
                (ENTITY, pa.int64()),
                *[(spec.name, types[spec.dtype]) for spec in FEATURES],
                ("probability", pa.float64()),
                ("prediction", pa.bool_()),
            ]
        )

    @staticmethod
    def feedback_schema() -> pa.Schema:
        import pyarrow as pa

        return pa.schema(
            [
                ("request_id", pa.string()),
                (LABEL, pa.bool_()),
                (RECEIVED_AT, pa.timestamp("us", tz="UTC")),
            ]
        )

    @staticmethod
    def shadow_schema() -> pa.Schema:
        import pyarrow as pa

        return pa.schema(
            [
                ("request_id", pa.string()),
                ("shadow_version", pa.string()),
                ("shadow_probability", pa.float64()),
                (SCORED_AT, pa.timestamp("us", tz="UTC")),
            ]
        )

    def write_predictions(self, rows: list[Row]) -> None:
        self._write_files(_by_day(rows, SERVED_AT, self.predictions_dir), self.prediction_schema())

    def write_feedback(self, rows: list[Row]) -> None:
        self._write_files({self.feedback_dir: rows}, self.feedback_schema())

    def write_shadow(self, rows: list[Row]) -> None:
        self._write_files(_by_day(rows, SCORED_AT, self.shadow_dir), self.shadow_schema())

    @staticmethod
    def _write_files(parts: Mapping[Path, list[Row]], schema: pa.Schema) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        # Unique per process and batch: workers never write the same file.
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
        written = []
        for directory, rows in parts.items():
            directory.mkdir(parents=True, exist_ok=True)
            # Readers skip names starting with "."; the rename below publishes the file whole.
            temporary = directory / f".{name}.tmp"
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), temporary)
            written.append((temporary, directory / name))
        for temporary, final in written:
            os.replace(temporary, final)

    @staticmethod
    def _days(directory: Path, schema: pa.Schema) -> ds.Dataset:
        """The ``date=<day>`` partitions under `directory`; `schema` fills columns older files lack."""
        import pyarrow as pa
        import pyarrow.dataset as ds

        day = pa.field("date", pa.string())
        return ds.dataset(
            directory,
            format="parquet",
            schema=schema.append(day),
            partitioning=ds.partitioning(pa.schema([day]), flavor="hive"),
        )

    def read_window(self, start: datetime, end: datetime) -> pd.DataFrame:
        import pyarrow as pa
        import pyarrow.dataset as ds

        start, end = _utc(start), _utc(end)
        schema = self.prediction_schema()
        columns = list(PREDICTION_COLUMNS)
        if self.predictions_dir.is_dir():
            in_window = (
                (ds.field("date") >= start.date().isoformat())
                & (ds.field("date") <= end.date().isoformat())
                & (ds.field(SERVED_AT) >= pa.scalar(start, schema.field(SERVED_AT).type))
                & (ds.field(SERVED_AT) < pa.scalar(end, schema.field(SERVED_AT).type))
            )
            predictions = self._days(self.predictions_dir, schema).to_table(
                columns=columns, filter=in_window
            )
        else:
            predictions = schema.empty_table()
        joined = (
            predictions.to_pandas()
            .merge(self._labels(), on="request_id", how="left")
            .merge(self._shadow(start, end), on="request_id", how="left")
        )
        return _window_frame(joined)

    def _shadow(self, start: datetime, end: datetime) -> pd.DataFrame:
        import pyarrow.dataset as ds

        schema = self.shadow_schema()
        if self.shadow_dir.is_dir():
            # Scored just after serving: possibly past midnight of the window's last day.
            last_day = (end + timedelta(days=1)).date().isoformat()
            in_days = (ds.field("date") >= start.date().isoformat()) & (
                ds.field("date") <= last_day
            )
            shadow = self._days(self.shadow_dir, schema).to_table(
                columns=list(SHADOW_COLUMNS), filter=in_days
            )
        else:
            shadow = schema.empty_table()
        scored = shadow.to_pandas().drop_duplicates("request_id", keep="last")
        return scored[["request_id", "shadow_version", "shadow_probability"]]

    def _labels(self) -> pd.DataFrame:
        import pyarrow.dataset as ds

        schema = self.feedback_schema()
        if self.feedback_dir.is_dir():
            feedback = ds.dataset(self.feedback_dir, format="parquet", schema=schema).to_table()
        else:
            feedback = schema.empty_table()
        # A corrected label replaces the earlier one.
        latest = feedback.to_pandas().sort_values(RECEIVED_AT, kind="stable")
        return latest.drop_duplicates("request_id", keep="last")[["request_id", LABEL]]

    def count(self) -> int:
        import pyarrow.dataset as ds

        if not self.predictions_dir.is_dir():
            return 0
        return int(ds.dataset(self.predictions_dir, format="parquet").count_rows())

    def close(self) -> None:
        """Nothing to release: every batch is a closed file."""


class PostgresStore:
    """The tables `PREDICTIONS_TABLE` and `FEEDBACK_TABLE` in a Postgres database."""

    def __init__(self, url: str) -> None:
        # SQLAlchemy spells the driver into the scheme; libpq wants plain postgresql://.
        scheme, separator, rest = url.partition("://")
        self.conninfo = f"{scheme.partition('+')[0]}{separator}{rest}"
        self._connection: psycopg.Connection[Any] | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        connection = psycopg.connect(self.conninfo)
        self._create_tables(connection)
        return connection

    def _create_tables(self, connection: psycopg.Connection[Any]) -> None:
        features = ", ".join(f"{spec.name} {_SQL_TYPES[spec.dtype]} NOT NULL" for spec in FEATURES)
        with connection.transaction():
            # Workers start together: without the lock, two CREATE TABLE IF NOT EXISTS can collide.
            connection.execute("SELECT pg_advisory_xact_lock(hashtext('inference_log'))")
            connection.execute(
                f"CREATE TABLE IF NOT EXISTS {PREDICTIONS_TABLE} ("
                f"request_id text PRIMARY KEY, {SERVED_AT} timestamptz NOT NULL, "
                f"model_version text NOT NULL, {ENTITY} bigint, {features}, "
                "probability double precision NOT NULL, prediction boolean NOT NULL)"
            )
            # Columns added since the first release: a database created earlier gains them.
            connection.execute(
                f"ALTER TABLE {PREDICTIONS_TABLE} ADD COLUMN IF NOT EXISTS "
                f"{VARIANT} text NOT NULL DEFAULT '{DEFAULT_VARIANT}'"
            )
            connection.execute(
                f"CREATE INDEX IF NOT EXISTS {PREDICTIONS_TABLE}_{SERVED_AT} "
                f"ON {PREDICTIONS_TABLE} ({SERVED_AT})"
            )
            connection.execute(
                f"CREATE TABLE IF NOT EXISTS {FEEDBACK_TABLE} (request_id text PRIMARY KEY, "
                f"{LABEL} boolean NOT NULL, {RECEIVED_AT} timestamptz NOT NULL)"
            )
            connection.execute(
                f"CREATE TABLE IF NOT EXISTS {SHADOW_TABLE} (request_id text PRIMARY KEY, "
                "shadow_version text NOT NULL, shadow_probability double precision NOT NULL, "
                f"{SCORED_AT} timestamptz NOT NULL)"
            )

    def _write(self, statement: str, columns: tuple[str, ...], rows: list[Row]) -> None:
        if self._connection is None or self._connection.closed:
            self._connection = self._connect()
        try:
            with self._connection.transaction(), self._connection.cursor() as cursor:
                cursor.executemany(statement, [tuple(row[c] for c in columns) for row in rows])
        except Exception:
            # The next attempt starts from a fresh connection.
            self.close()
            raise

    def _insert_new(self, table: str, columns: tuple[str, ...], rows: list[Row]) -> None:
        # A retried batch repeats request ids that are already stored: keep the first.
        placeholders = ", ".join(["%s"] * len(columns))
        self._write(
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({placeholders}) ON CONFLICT (request_id) DO NOTHING",
            columns,
            rows,
        )

    def write_predictions(self, rows: list[Row]) -> None:
        self._insert_new(PREDICTIONS_TABLE, PREDICTION_COLUMNS, rows)

    def write_feedback(self, rows: list[Row]) -> None:
        # The latest label wins, also when a retried batch arrives after a newer one.
        self._write(
            f"INSERT INTO {FEEDBACK_TABLE} ({', '.join(FEEDBACK_COLUMNS)}) "
            "VALUES (%s, %s, %s) ON CONFLICT (request_id) DO UPDATE "
            f"SET {LABEL} = EXCLUDED.{LABEL}, {RECEIVED_AT} = EXCLUDED.{RECEIVED_AT} "
            f"WHERE EXCLUDED.{RECEIVED_AT} >= {FEEDBACK_TABLE}.{RECEIVED_AT}",
            FEEDBACK_COLUMNS,
            rows,
        )

    def write_shadow(self, rows: list[Row]) -> None:
        self._insert_new(SHADOW_TABLE, SHADOW_COLUMNS, rows)

    def read_window(self, start: datetime, end: datetime) -> pd.DataFrame:
        import pandas as pd

        selected = ", ".join(f"p.{column}" for column in PREDICTION_COLUMNS)
        with self._connect() as connection, connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {selected}, f.{LABEL}, s.shadow_version, s.shadow_probability "
                f"FROM {PREDICTIONS_TABLE} AS p "
                f"LEFT JOIN {FEEDBACK_TABLE} AS f ON f.request_id = p.request_id "
                f"LEFT JOIN {SHADOW_TABLE} AS s ON s.request_id = p.request_id "
                f"WHERE p.{SERVED_AT} >= %s AND p.{SERVED_AT} < %s",
                (_utc(start), _utc(end)),
            )
            frame = pd.DataFrame.from_records(
                cursor.fetchall(), columns=[*PREDICTION_COLUMNS, *JOINED_COLUMNS]
            )
        return _window_frame(frame)

    def count(self) -> int:
        with self._connect() as connection:
            row = connection.execute(f"SELECT count(*) FROM {PREDICTIONS_TABLE}").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None


class _Flush:
    """A marker on the queue: everything queued before it is written when `done` is set."""

    def __init__(self) -> None:
        self.done = threading.Event()


_CLOSE = object()


class InferenceLog:
    """Records predictions and labels through a bounded queue and a background writer.

    The writer sleeps until a batch is queued or the oldest queued row is
    `flush_interval` seconds old: a request wakes no thread, so logging costs
    the request path a few microseconds. `on_write(kind, rows, queue_depth)`
    is called from the writer after every write attempt (rows is 0 when it
    failed); the service updates its metrics there.
    """

    def __init__(
        self,
        store: Store,
        *,
        batch_size: int = BATCH_SIZE,
        flush_interval: float = FLUSH_INTERVAL,
        max_queue: int = MAX_QUEUE,
        enqueue_timeout: float = ENQUEUE_TIMEOUT,
        on_write: Callable[[Kind, int, int], None] | None = None,
    ) -> None:
        self.store = store
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.enqueue_timeout = enqueue_timeout
        self._on_write = on_write
        # Items: (kind, row, monotonic time queued), a _Flush marker, or _CLOSE.
        self._queue: queue.Queue[object] = queue.Queue(max_queue)
        self._wake = threading.Event()
        # Taken off the queue, not written yet: at most one batch.
        self._pending: list[tuple[Kind, Row, float]] = []
        self._writer: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        # Set when `close` runs out of time: the writer stops retrying.
        self._abandon = threading.Event()
        self.written: dict[Kind, int] = {"prediction": 0, "feedback": 0, "shadow": 0}
        self.rejected = 0
        self.shadow_dropped = 0
        self.lost = 0

    # Recording (any thread) -------------------------------------------------

    def prediction_row(
        self,
        *,
        model_version: str,
        features: Mapping[str, Any],
        probability: float,
        prediction: bool,
        customer_id: int | None = None,
        request_id: str | None = None,
        variant: str = DEFAULT_VARIANT,
    ) -> Row:
        """The log row of one served prediction (the features in contract types)."""
        row: Row = {
            "request_id": request_id or new_request_id(),
            SERVED_AT: datetime.now(UTC),
            "model_version": model_version,
            VARIANT: variant,
            ENTITY: None if customer_id is None else int(customer_id),
            "probability": float(probability),
            "prediction": bool(prediction),
        }
        for spec in FEATURES:
            row[spec.name] = _PYTHON_TYPES[spec.dtype](features[spec.name])
        return row

    @staticmethod
    def feedback_row(request_id: str, label: bool) -> Row:
        """The log row of a label that arrived for `request_id`."""
        return {"request_id": request_id, LABEL: bool(label), RECEIVED_AT: datetime.now(UTC)}

    @staticmethod
    def shadow_row(request_id: str, model_version: str, probability: float) -> Row:
        """The log row of the challenger's score for `request_id`, made in shadow mode."""
        return {
            "request_id": request_id,
            "shadow_version": model_version,
            "shadow_probability": float(probability),
            SCORED_AT: datetime.now(UTC),
        }

    def record(self, row: Row, kind: Kind = "prediction", timeout: float | None = None) -> None:
        """Queue a row; wait for room up to `timeout` seconds (default `enqueue_timeout`).

        Raises `InferenceLogFull` if the queue stayed full (the row is not
        logged: do not serve the prediction), `InferenceLogClosed` after `close`.
        """
        timeout = self.enqueue_timeout if timeout is None else timeout
        try:
            self._put((kind, row, time.monotonic()), timeout)
        except queue.Full:
            self.rejected += 1
            raise InferenceLogFull(
                f"the inference log queue stayed full ({self._queue.maxsize} rows) for "
                f"{timeout:.1f} s: its store is slower than the traffic, or unreachable"
            ) from None

    async def record_async(self, row: Row, kind: Kind = "prediction") -> None:
        """`record` for an event loop: waiting for room blocks a thread, not the loop."""
        try:
            self._put((kind, row, time.monotonic()), 0)
        except queue.Full:
            await asyncio.to_thread(self.record, row, kind)

    def record_feedback(self, request_id: str, label: bool, timeout: float | None = None) -> None:
        """Queue the true outcome of a logged prediction; a later label replaces an earlier one."""
        self.record(self.feedback_row(request_id, label), "feedback", timeout)

    def record_shadow(self, request_id: str, model_version: str, probability: float) -> bool:
        """Queue a shadow score if there is room now; False if the queue is full.

        Never waits: a shadow score is a comparison, not a served prediction,
        so when the store falls behind the room goes to the rows clients got.
        """
        row = self.shadow_row(request_id, model_version, probability)
        try:
            self._put(("shadow", row, time.monotonic()), 0)
        except queue.Full:
            self.shadow_dropped += 1
            return False
        return True

    def _put(self, item: object, timeout: float, wake: bool = False) -> None:
        if self._closed:
            raise InferenceLogClosed("the inference log is closed")
        self._start_writer()
        self._queue.put(item, timeout=timeout)
        if wake or self._queue.qsize() >= self.batch_size:
            self._wake.set()

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything recorded before this call is written; False on timeout."""
        if self._closed:
            return True
        marker = _Flush()
        try:
            self._put(marker, timeout=30.0 if timeout is None else timeout, wake=True)
        except queue.Full:
            return False
        return marker.done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write everything recorded, then stop the writer. Call it on shutdown.

        If the store still fails after `timeout` seconds, the rows not written
        are counted in `lost` and logged as an error: the only loss, and loud.
        """
        if self._closed:
            return
        if self._writer is not None:
            deadline = time.monotonic() + timeout
            with contextlib.suppress(queue.Full):
                self._put(_CLOSE, timeout=timeout, wake=True)
            self._closed = True
            self._writer.join(max(0.0, deadline - time.monotonic()))
            if self._writer.is_alive():
                self._abandon.set()
                self._writer.join()
            # A request that raced with close() may have queued a row after the marker.
            self._drain(force=not self._abandon.is_set())
            self.lost = len(self._pending) + self._queue.qsize()
            if self.lost:
                log.error("inference log closed with %d row(s) not written", self.lost)
        self._closed = True
        self.store.close()

    def __enter__(self) -> InferenceLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Reading ----------------------------------------------------------------

    def read_window(self, start: datetime, end: datetime | None = None) -> pd.DataFrame:
        """Predictions served in [start, end) (UTC; default end: now), each with its label or NA."""
        end = end or datetime.now(UTC) + timedelta(microseconds=1)
        return self.store.read_window(start, end)

    def count(self) -> int:
        """Predictions in the store (rows still queued are not counted until written)."""
        return self.store.count()

    # The writer thread --------------------------------------------------------

    def _start_writer(self) -> None:
        if self._writer is not None:
            return
        with self._start_lock:
            if self._writer is None:
                # Daemon: a process that exits without close() must not hang on it.
                writer = threading.Thread(target=self._run, name="inference-log", daemon=True)
                writer.start()
                self._writer = writer

    def _run(self) -> None:
        while True:
            oldest = self._pending[0][2] if self._pending else None
            if oldest is None:
                self._wake.wait(self.flush_interval)
            else:
                self._wake.wait(max(0.0, oldest + self.flush_interval - time.monotonic()))
            self._wake.clear()
            if not self._drain(force=False):
                return

    def _drain(self, force: bool) -> bool:
        """Take what is queued, writing every full batch; False once closed or abandoned.

        The rest is written too if `force`, a flush or close marker was taken,
        or the oldest pending row has waited `flush_interval` seconds.
        """
        markers: list[_Flush] = []
        closing = False
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Flush):
                markers.append(item)
            elif item is _CLOSE:
                closing = True
            elif isinstance(item, tuple):
                self._pending.append(item)
                if len(self._pending) >= self.batch_size and not self._write_pending():
                    return False
        due = bool(self._pending) and time.monotonic() - self._pending[0][2] >= self.flush_interval
        if (force or markers or closing or due) and not self._write_pending():
            return False
        for marker in markers:
            marker.done.set()
        return not closing

    def _write_pending(self) -> bool:
        """Write the pending rows, retrying with backoff; False if `close` gave up on them."""
        delay = 0.5
        for kind, write in (
            ("prediction", self.store.write_predictions),
            ("feedback", self.store.write_feedback),
            ("shadow", self.store.write_shadow),
        ):
            rows = [row for queued, row, _ in self._pending if queued == kind]
            while rows:
                try:
                    write(rows)
                except Exception:
                    log.exception(
                        "writing %d %s row(s) to the inference log failed; retrying in %.1f s",
                        len(rows),
                        kind,
                        delay,
                    )
                    self._report(kind, 0)
                    if self._abandon.wait(delay):
                        return False
                    delay = min(delay * 2, MAX_RETRY_DELAY)
                    continue
                self.written[kind] += len(rows)
                # Written: a retry of the other kind must not write these again.
                self._pending = [item for item in self._pending if item[0] != kind]
                self._report(kind, len(rows))
                break
        return True

    def _report(self, kind: Kind, rows: int) -> None:
        if self._on_write is not None:
            self._on_write(kind, rows, self._queue.qsize())


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
    """An `InferenceLog` on the configured store; `options` go to `InferenceLog`."""
    return InferenceLog(open_store(settings), **options)
