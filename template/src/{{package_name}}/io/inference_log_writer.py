"""`InferenceLog`: rows recorded on the request path, written in batches by a background thread.

`record` only puts the row on a bounded queue; a writer thread writes batches
of up to `BATCH_SIZE` rows, at the latest `FLUSH_INTERVAL` seconds after the
oldest unwritten row arrived. The guarantees (nothing served goes unlogged,
what `close` writes) are in the `inference_log` module's docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .inference_log_journal import Journal
from .inference_log_store import (
    Kind,
    Row,
    Store,
    feedback_row,
    prediction_row,
    shadow_row,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import pandas as pd

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
# Journal bytes past which the writer empties it even under load (briefly holding
# new requests while it writes out what is queued).
JOURNAL_LIMIT = 64 * 1024 * 1024


class InferenceLogFull(RuntimeError):
    """The queue stayed full for the whole wait: the row was not accepted."""


class InferenceLogClosed(RuntimeError):
    """`record` after `close`: the writer is gone."""


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
        journal_dir: Path | None = None,
    ) -> None:
        self.store = store
        # Where `record` journals rows before it returns (inference_log_journal).
        self._journal = Journal(journal_dir) if journal_dir is not None else None
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

    # The rows `record` takes (also reachable as `inference_log_store` functions).
    prediction_row = staticmethod(prediction_row)
    feedback_row = staticmethod(feedback_row)
    shadow_row = staticmethod(shadow_row)

    def record(self, row: Row, kind: Kind = "prediction", timeout: float | None = None) -> None:
        """Journal and queue a row; wait for room up to `timeout` seconds (default
        `enqueue_timeout`).

        Raises `InferenceLogFull` if the queue stayed full (the row is not
        logged: do not serve the prediction), `InferenceLogClosed` after `close`.
        """
        timeout = self.enqueue_timeout if timeout is None else timeout
        with self._journaling(row, kind):
            self._enqueue(row, kind, timeout)

    async def record_async(self, row: Row, kind: Kind = "prediction") -> None:
        """`record` for an event loop: waiting for room blocks a thread, not the loop."""
        with self._journaling(row, kind):
            try:
                self._put((kind, row, time.monotonic()), 0)
            except queue.Full:
                await asyncio.to_thread(self._enqueue, row, kind, self.enqueue_timeout)

    def _journaling(self, row: Row, kind: Kind) -> contextlib.AbstractContextManager[None]:
        return self._journal.entry(row, kind) if self._journal else contextlib.nullcontext()

    def _enqueue(self, row: Row, kind: Kind, timeout: float) -> None:
        try:
            self._put((kind, row, time.monotonic()), timeout)
        except queue.Full:
            self.rejected += 1
            raise InferenceLogFull(
                f"the inference log queue stayed full ({self._queue.maxsize} rows) for "
                f"{timeout:.1f} s: its store is slower than the traffic, or unreachable"
            ) from None

    def recover(self) -> int:
        """Store what killed workers journaled but never wrote; call it at start. The
        number of predictions recovered (see `Journal.recover`)."""
        return self._journal.recover(self.store) if self._journal is not None else 0

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
        if self._journal is not None:
            # Rows not written stay journaled: the next start replays them.
            self._journal.close(written=not self.lost)
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
            oldest = self._pending[0][2] if self._pending else time.monotonic()
            # Rows that arrived while the last round wrote are taken at once.
            if self._queue.empty():
                self._wake.wait(max(0.0, oldest + self.flush_interval - time.monotonic()))
            self._wake.clear()
            if not self._drain(force=False) or not self._compact_journal():
                return

    def _compact_journal(self) -> bool:
        """Empty the journal once every row in it is stored: whenever the writer finds
        nothing queued, or, past `JOURNAL_LIMIT`, after writing out what is queued
        while new requests wait. False once closed (as `_drain`)."""
        journal = self._journal
        if journal is None or not journal.size:
            return True
        with journal.lock:
            while True:
                stored = journal.settled and self._queue.empty() and not self._pending
                if stored or journal.size < JOURNAL_LIMIT:
                    break
                if not self._drain(force=True):
                    return False
                time.sleep(0.001)
            if stored:
                journal.truncate()
        return True

    def _drain(self, force: bool) -> bool:
        """Take what is queued, writing every full batch; False once closed or abandoned.

        The rest is written too if `force`, a flush or close marker was taken,
        or the oldest pending row has waited `flush_interval` seconds.
        """
        markers: list[_Flush] = []
        closing = False
        # What is queued now, not what keeps arriving: the journal gets its turn between.
        for _ in range(self._queue.qsize()):
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
