"""One writer at a time in a home: a second training run waits for nothing, it stops.

Two runs on one embedded home share its SQLite stores (MLflow, Prefect's temporary
server) and would register the same data twice. An advisory ``flock`` on a file in
the home decides: the first run holds it until it ends, or until the kernel drops it
with the process (``kill -9`` included), so a crash never leaves a stale lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Generator
    from pathlib import Path


class HomeBusyError(RuntimeError):
    """Another process holds the home's lock; the message says which and since when."""


@contextmanager
def exclusive(home: Path, job: str) -> Generator[None]:
    """Hold ``<home>/<job>.lock`` for the block, or raise HomeBusyError at once."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / f"{job}.lock"
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(descriptor, 200, 0).decode(errors="replace").strip()
            raise HomeBusyError(
                f"another {job} run holds {path} ({holder or 'holder unknown'}); wait for it to end"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(
            descriptor, f"pid {os.getpid()} since {datetime.now(UTC):%H:%M:%S} UTC".encode(), 0
        )
        yield
    finally:
        # Closing drops the lock; the file stays (removing it would race a waiting run).
        os.close(descriptor)
