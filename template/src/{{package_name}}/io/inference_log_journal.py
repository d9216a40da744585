"""The inference log's journal: the rows a killed worker had answered but not written.

`InferenceLog.record` appends each prediction and label (not shadow scores, which
are comparisons, not answers) to its worker's journal before it returns, that is before the service answers: one `os.write` to a file
opened with O_APPEND. When the call returns the row is in the kernel's page
cache, which a killed process (SIGKILL, an OOM kill) cannot take back. A machine
that loses power can still lose what the kernel had not flushed to disk yet (by
default up to about 30 s of rows); the journal does not fsync, which would cost
every request a disk round trip.

Each worker writes its own file, ``<pid>-<random>.jsonl`` under the journal
directory, and holds an exclusive `flock` on it while it lives. The file is
emptied whenever every row in it is in the store (`truncate_if_written`). At start
a worker calls `replay`: every journal whose lock it can take belongs to a worker
that is gone; its rows go to the store (predictions already there are skipped)
and the file is deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .inference_log_store import RECEIVED_AT, SCORED_AT, SERVED_AT, Kind, Row

if TYPE_CHECKING:
    from collections.abc import Generator
    from pathlib import Path

    from .inference_log_store import Store

log = logging.getLogger(__name__)

_TIMES = (SERVED_AT, RECEIVED_AT, SCORED_AT)
# A line that takes back a journaled row: its request was refused (log full).
_CANCEL = "cancel"


def _line(kind: str, row: Row) -> bytes:
    encoded = {key: value.isoformat() if key in _TIMES else value for key, value in row.items()}
    return (json.dumps({"kind": kind, "row": encoded}) + "\n").encode()


def _row(encoded: dict[str, Any]) -> Row:
    return {
        key: datetime.fromisoformat(value) if key in _TIMES else value
        for key, value in encoded.items()
    }


class Journal:
    """This worker's journal file; created on the first `append`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self._fd: int | None = None
        # Bytes in the file: the writer empties it early once it passes a limit.
        self.size = 0
        # Held while appending, and by the writer thread while it empties the file.
        self.lock = threading.Lock()
        # Rows appended but not yet queued (or refused): the file must keep them.
        self._unqueued = 0
        self._count_lock = threading.Lock()

    @contextlib.contextmanager
    def entry(self, row: Row, kind: Kind) -> Generator[None]:
        """Journal `row`, then run the block that queues it; refused if the block raises."""
        self.append(kind, row)
        accepted = False
        try:
            yield
            accepted = True
        finally:
            self.queued(row, kind, accepted)

    def recover(self, store: Store) -> int:
        """`replay` this directory into `store`; on failure log it and keep the journals
        for the next start (0 recovered)."""
        try:
            return replay(self.directory, store)
        except Exception:
            log.exception("replaying the inference log's journals failed; kept for next start")
            return 0

    def append(self, kind: Kind, row: Row) -> None:
        """Journal a row; call `queued` once it is on the writer's queue (or refused)."""
        line = _line(kind, row)
        with self.lock:
            if self._fd is None:
                self._fd = self._open()
            self.size += os.write(self._fd, line)
            with self._count_lock:
                self._unqueued += 1

    def queued(self, row: Row, kind: Kind, accepted: bool) -> None:
        """The journaled `row` is on the queue, or (not `accepted`) was refused."""
        with self._count_lock:
            self._unqueued -= 1
        if not accepted:
            with self.lock:
                if self._fd is not None:
                    # By kind too: a refused label must not take back its prediction.
                    line = _line(_CANCEL, {"request_id": row["request_id"], "kind": kind})
                    self.size += os.write(self._fd, line)

    @property
    def settled(self) -> bool:
        """No row is between its journal line and the queue."""
        with self._count_lock:
            return self._unqueued == 0

    def truncate(self) -> None:
        """Empty the file; the caller holds `lock` and knows every row is in the store."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            self.size = 0

    def close(self, *, written: bool) -> None:
        """Release the file: deleted when everything in it is `written`, else kept for
        the next start to replay."""
        with self.lock:
            if self._fd is not None:
                if written:
                    self.path.unlink(missing_ok=True)
                os.close(self._fd)
                self._fd = None

    def _open(self) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd


def read(path: Path) -> dict[str, list[Row]]:
    """The predictions and labels a journal holds, without the ones taken back."""
    rows: dict[str, list[Row]] = {"prediction": [], "feedback": []}
    cancelled: set[tuple[str, str]] = set()
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            entry = json.loads(text)
            kind, row = entry["kind"], _row(entry["row"])
        except (ValueError, KeyError, TypeError):
            # Only a machine crash tears a line: the rest of the file still counts.
            log.warning("%s:%d: not a journal line, skipped", path, number)
            continue
        if kind == _CANCEL:
            cancelled.add((row.get("kind", ""), row["request_id"]))
        elif kind in rows:
            rows[kind].append(row)
    return {
        kind: [row for row in kind_rows if (kind, row["request_id"]) not in cancelled]
        for kind, kind_rows in rows.items()
    }


def replay(directory: Path, store: Store) -> int:
    """Write the rows of every journal no live worker holds to `store`, then delete
    those journals; the number of predictions that were missing from the store."""
    recovered = 0
    for path in sorted(directory.glob("*.jsonl")) if directory.is_dir() else []:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # another worker replayed it just now
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its worker is alive, or another one replays it
                continue
            if not path.exists():
                continue
            rows = read(path)
            predictions = rows["prediction"]
            known = store.logged_request_ids({row["request_id"] for row in predictions})
            missing = [row for row in predictions if row["request_id"] not in known]
            if missing:
                store.write_predictions(missing)
            if rows["feedback"]:
                store.write_feedback(rows["feedback"])
            recovered += len(missing)
            path.unlink()
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
    if recovered:
        log.warning("inference log: %d prediction(s) recovered from journals", recovered)
    return recovered
