"""MLServer with its MLflow runtime on the registry's champion: the local KServe / Seldon path.

In the cluster, KServe's InferenceService (model format ``mlflow``, protocol
``v2``) and Seldon's ``Model`` run this same server and runtime on the same
artifacts. Locally the project does what their storage initializer does: it
downloads the champion's artifacts into a model repository, writes MLServer's
``settings.json`` and ``model-settings.json``, and runs ``mlserver start``.

A new champion (``promote``, ``rollback``) is swapped in without a restart:
`MLServer.sync` stages that version next to the old one, points
``model-settings.json`` at it and asks MLServer's repository API to load it,
which unloads the old version once the new one is ready (what Seldon's agent
does on a cluster).

Only the V2 (Open Inference) protocol is spoken here: `v2_client` is the client.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..io import registry
from .server import free_ports

if TYPE_CHECKING:
    from types import TracebackType

    from ..config import Settings

# MLServer's MLflow runtime plus request checks (see `runtime`): bad requests get 400, not 500.
# MLServer imports it by this dotted path, so it follows the package's real name.
RUNTIME = f"{__package__}.runtime.ModelRuntime"
MODEL_SETTINGS = "model-settings.json"
# What runs the model: the versions KServe's and Seldon's MLServer images ship.
MLSERVER_PACKAGES = ("mlserver==1.7.1", "mlserver-mlflow==1.7.1")
SERVER_SETTINGS = "settings.json"


class MLServerError(RuntimeError):
    """MLServer did not start, did not become ready, or refused a model."""


@dataclass(frozen=True)
class Ports:
    """Where MLServer listens: V2 over HTTP, V2 over gRPC, Prometheus metrics."""

    http: int
    grpc: int
    metrics: int

    @classmethod
    def free(cls, host: str = "127.0.0.1") -> Ports:
        """Three ports nobody listens on, all different."""
        http, grpc, metrics = free_ports(3, host)
        return cls(http=http, grpc=grpc, metrics=metrics)

    @classmethod
    def from_settings(cls, settings: Settings) -> Ports:
        """The configured ports (MLServer's own defaults: 8080, 8081, 8082)."""
        return cls(
            http=settings.model_server_port,
            grpc=settings.model_server_grpc_port,
            metrics=settings.model_server_metrics_port,
        )


def champion(settings: Settings) -> registry.ModelRef:
    """The version behind the champion alias; `MLServerError` if there is none."""
    client = registry.connect(settings)
    ref = registry.by_alias(client, settings.model_name, settings.champion_alias)
    if ref is None:
        raise MLServerError(
            f"no version of model '{settings.model_name}' has the alias "
            f"'{settings.champion_alias}': train one first"
        )
    return ref


def stage(settings: Settings, root: Path, ref: registry.ModelRef) -> Path:
    """Download `ref`'s artifacts into the repository and point ``model-settings.json`` at them.

    Each version gets its own directory (``<root>/<model>/<version>``), so a
    running server keeps reading the old files until it has loaded the new ones.
    """
    import mlflow.artifacts

    model_dir = root / settings.model_name
    version_dir = model_dir / ref.version
    if not (version_dir / "MLmodel").exists():
        # Download next to the target, then rename: a half-written version is never picked up.
        partial = model_dir / f".{ref.version}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=str(partial))
        partial.rename(version_dir)
    model_settings: dict[str, object] = {
        "name": settings.model_name,
        "implementation": RUNTIME,
        # The runtime loads the pyfunc; training logs it with predict_fn="predict_proba",
        # so the V2 answer is [P(no churn), P(churn)] per row, not a 0/1 label.
        "parameters": {"uri": f"./{ref.version}", "version": ref.version},
    }
    _write_json(model_dir / MODEL_SETTINGS, model_settings)
    return version_dir


def write_server_settings(root: Path, ports: Ports, host: str = "127.0.0.1") -> Path:
    """MLServer's ``settings.json``: where it listens, inference in the server process."""
    server_settings = {
        "host": host,
        "http_port": ports.http,
        "grpc_port": ports.grpc,
        "metrics_port": ports.metrics,
        # 0: no worker pool. One process, like one BentoML worker; a pool forks per core.
        "parallel_workers": 0,
        # Quiet access logs, and no tracebacks in error responses.
        "debug": False,
    }
    return _write_json(root / SERVER_SETTINGS, server_settings)


def _write_json(path: Path, content: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename: MLServer may read the file while we write it.
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(content, indent=2) + "\n")
    partial.replace(path)
    return path


def command(root: Path, requirements: Path) -> list[str]:
    """``mlserver start <root>``, in an environment of its own unless MLServer is installed here.

    MLServer 1.7 pins FastAPI below 0.116, which Feast 0.67 and current Prefect
    cannot live with, so the project does not install it: ``uv tool run`` builds
    (once, then from uv's cache) an environment with MLServer, its MLflow runtime
    and the champion's own ``requirements.txt``, which is what a KServe or
    Seldon MLServer image installs. This interpreter's Python runs it.
    """
    installed = Path(sys.executable).with_name("mlserver")
    if installed.exists():
        return [str(installed), "start", str(root)]
    uv = shutil.which("uv")
    if uv is None:
        raise MLServerError("MLServer runs through uv (uv tool run): install uv, or mlserver")
    return [
        uv,
        "tool",
        "run",
        "--python",
        sys.executable,
        "--from",
        MLSERVER_PACKAGES[0],
        *(argument for package in MLSERVER_PACKAGES[1:] for argument in ("--with", package)),
        "--with-requirements",
        str(requirements),
        "mlserver",
        "start",
        str(root),
    ]


def environment(root: Path) -> dict[str, str]:
    """This environment for MLServer, which must import `RUNTIME` from this very package.

    PYTHONPATH holds only a link to this package (under ``<root>/python``): on
    uv's separate environment, this project's other dependencies must not
    shadow MLServer's. ``MLSERVER_*`` variables are dropped: settings.json alone
    configures the server.
    """
    package = Path(__file__).parents[1]
    link = root / "python" / package.name
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(package, target_is_directory=True)
    env = {name: value for name, value in os.environ.items() if not name.startswith("MLSERVER")}
    env["PYTHONPATH"] = str(link.parent)
    # uv would otherwise warn that the project's active virtualenv is not the tool's.
    env.pop("VIRTUAL_ENV", None)
    return env


class MLServer:
    """A running ``mlserver start`` on a model repository, serving one model over V2."""

    def __init__(
        self,
        settings: Settings,
        root: Path,
        ports: Ports,
        served: registry.ModelRef,
        process: subprocess.Popen[bytes],
        log_path: Path,
    ) -> None:
        self.settings = settings
        self.root = root
        self.ports = ports
        self.served = served
        self.process = process
        self.log_path = log_path

    @property
    def url(self) -> str:
        """``host:port`` of the V2 HTTP endpoint (the form tritonclient takes)."""
        # A server on every interface (a container) is still reached on loopback from here.
        host = "127.0.0.1" if self.settings.host == "0.0.0.0" else self.settings.host
        return f"{host}:{self.ports.http}"

    @property
    def base_url(self) -> str:
        return f"http://{self.url}"

    @property
    def model_name(self) -> str:
        return self.settings.model_name

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Poll server and model readiness; return the seconds waited."""
        started = time.monotonic()
        paths = ("/v2/health/ready", f"/v2/models/{self.model_name}/ready")
        last = "no answer"
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise MLServerError(
                    f"mlserver exited with code {self.process.returncode} before it was ready"
                    + self.log_tail()
                )
            try:
                if all(self._get(path) == 200 for path in paths):
                    return time.monotonic() - started
                last = "model not ready"
            except OSError as error:  # not listening yet
                last = str(error)
            time.sleep(0.1)
        raise MLServerError(
            f"{self.base_url} not ready after {timeout:.0f} s ({last})" + self.log_tail()
        )

    def _get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"{self.base_url}{path}", timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code

    def sync(self, timeout: float = 60.0) -> registry.ModelRef | None:
        """Serve the current champion if it changed; return it, or None when nothing changed.

        Stages the version, then ``POST /v2/repository/models/<name>/load``: MLServer
        re-reads ``model-settings.json``, loads the new version and unloads the old
        one. Requests keep being answered by the old version until then. A version
        MLServer cannot load leaves the old one serving (and on disk, for a restart).
        """
        ref = champion(self.settings)
        if ref.version == self.served.version:
            return None
        stage(self.settings, self.root, ref)
        request = urllib.request.Request(
            f"{self.base_url}/v2/repository/models/{self.model_name}/load", method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                pass
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            # Point model-settings.json back at what is still being served.
            stage(self.settings, self.root, self.served)
            raise MLServerError(
                f"MLServer could not load version {ref.version} (HTTP {error.code} {detail}); "
                f"version {self.served.version} is still served" + self.log_tail(10)
            ) from None
        self.served = ref
        return ref

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"\nlast lines of {self.log_path}:\n" + "\n".join(tail)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (MLServer unloads its models and exits), SIGKILL after `timeout`."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> MLServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start(settings: Settings, root: Path | None = None, ports: Ports | None = None) -> MLServer:
    """Stage the champion under `root` (default ``<home>/mlserver``) and launch MLServer.

    `ports` default to the settings' ``model_server_*`` ports. Returns at once: call `MLServer.wait_ready` before sending requests. The
    server logs to ``<home>/logs/mlserver.log``.
    """
    root = root or settings.home / "mlserver"
    ports = ports or Ports.from_settings(settings)
    served = champion(settings)
    version_dir = stage(settings, root, served)
    write_server_settings(root, ports, host=settings.host)
    log_path = settings.home / "logs" / "mlserver.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command(root, version_dir / "requirements.txt"),
            cwd=root,
            env=environment(root),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return MLServer(settings, root, ports, served, process, log_path)
