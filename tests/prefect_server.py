"""One Prefect server for every generated suite of a run, instead of one per suite.

A generated suite that finds no ``PREFECT_API_URL`` starts Prefect's temporary
server on its first flow: about 10 s, more under load, for each of 25 suites.
Instead, the first suite that needs a server starts ``prefect server start`` on
loopback from its own environment (the Prefect its lock resolved) and the rest
are given its URL. The run's controller (the xdist controller, or a lone pytest)
names the directory the server keeps its state in before workers start, and
stops the server by PID when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from filelock import FileLock

DIR_VARIABLE = "MLOPS_TESTS_PREFECT_DIR"
START_TIMEOUT = 180.0


def _controller() -> bool:
    return "PYTEST_XDIST_WORKER" not in os.environ


def begin_run() -> None:
    """In the controller: make this run's server directory, inherited by the workers."""
    if _controller():
        os.environ[DIR_VARIABLE] = tempfile.mkdtemp(prefix="prefect-server-")


def end_run() -> None:
    """In the controller: stop the server if a suite started one, and remove its state."""
    if not _controller() or DIR_VARIABLE not in os.environ:
        return
    root = Path(os.environ.pop(DIR_VARIABLE))
    pid_file = root / "pid"
    if pid_file.exists():
        stop(int(pid_file.read_text(encoding="utf-8")))
    shutil.rmtree(root, ignore_errors=True)


def api_url(python: Path, env: dict[str, str]) -> str:
    """The run's server URL (``.../api``), started with `python` if none runs yet."""
    root = Path(os.environ[DIR_VARIABLE])
    with FileLock(root / "lock"):
        url_file = root / "url"
        if url_file.exists():
            return url_file.read_text(encoding="utf-8")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        log = root / "server.log"
        server_env = env | {
            "PREFECT_HOME": str(root / "home"),
            # The API is all the suites use: no UI to build, no telemetry.
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        command = [str(python), "-m", "prefect", "server", "start"]
        with log.open("ab") as output:
            process = subprocess.Popen(
                [*command, "--host", "127.0.0.1", "--port", str(port)],
                env=server_env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                # Its own process group: the stop reaches the server's workers too.
                start_new_session=True,
            )
        (root / "pid").write_text(str(process.pid), encoding="utf-8")
        url = f"http://127.0.0.1:{port}/api"
        _wait_healthy(url, process, log)
        url_file.write_text(url, encoding="utf-8")
        return url


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # noqa: S310 (http on loopback)
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    raise RuntimeError(f"the shared Prefect server at {url} did not become healthy:\n{tail}")


def _alive(pid: int) -> bool:
    """Running, not a zombie (whose parent, the worker that started it, may not reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop(pid: int, grace: float = 15.0) -> None:
    """SIGTERM to the server's process group, SIGKILL after `grace` seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
