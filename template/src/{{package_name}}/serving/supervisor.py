"""The `model-server` command's process: MLServer in the foreground, following the champion.

Starts MLServer (`mlserver.start`), waits until it serves, then every
``reload_interval`` seconds asks it to load a new champion (`MLServer.sync`)
until it exits or the process is told to stop (Ctrl-C, or a container's
SIGTERM). Messages go to the caller's `info` and `error`, so the CLI decides
how they are shown.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from typing import TYPE_CHECKING

from . import mlserver

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    from ..config import Settings


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def supervise(
    settings: Settings,
    port: int | None,
    *,
    info: Callable[[str], None],
    error: Callable[[str], None],
) -> int:
    """Run MLServer on the champion until it exits (1) or is stopped (0); the exit code."""
    # Each staged champion would draw MLflow's download progress bar into the server's output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    ports = mlserver.Ports.from_settings(settings)
    if port is not None:
        ports = dataclasses.replace(ports, http=port)
    try:
        running = mlserver.start(settings, ports=ports)
    except mlserver.MLServerError as failure:
        error(str(failure))
        return 1
    # A container's SIGTERM stops MLServer as Ctrl-C does (it runs in a session of its own).
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)
    try:
        running.wait_ready()
        info(
            f"serving models:/{settings.model_name}@{settings.champion_alias} "
            f"(version {running.served.version}) over V2 at "
            f"{running.base_url}/v2/models/{running.model_name}"
        )
        while running.process.poll() is None:
            time.sleep(settings.reload_interval or 1.0)
            if not settings.reload_interval:
                continue
            try:
                swapped = running.sync()
            except Exception as failure:
                # A champion MLServer cannot load, or a registry out of reach: the
                # loaded version keeps serving, and the next round tries again.
                error(str(failure))
                continue
            if swapped is not None:
                info(f"now serving version {swapped.version}")
        error(f"mlserver exited with code {running.process.returncode}" + running.log_tail())
        return 1
    except mlserver.MLServerError as failure:
        error(str(failure))
        return 1
    except KeyboardInterrupt:
        info("stopping")
        return 0
    finally:
        running.stop()
        signal.signal(signal.SIGTERM, previous_handler)
