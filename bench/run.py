"""Benchmarks for the template and the project it renders; prints numbers, asserts nothing.

Run with `nox -s bench`. Measures: render time, CLI --help time, copy -> first served
prediction, embedded demo wall time, generated test-suite time, training and service
peak RSS, serving latency/throughput side by side with `mlflow models serve` on the
same registered model with the same worker count (wrk on loopback), the same project
against its local stack (start-up time, train time there vs embedded, serving with
Redis online lookups and the Postgres inference log), and the production check's time
and peak RSS over 10k, 100k and 1M logged predictions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = "churn-model"
MODEL = "churn-model"
ENV_PREFIX = "CHURN_MODEL_"


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=True, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload]


def timed(args: list[str], **kwargs: object) -> float:
    started = time.perf_counter()
    run(args, **kwargs)
    return time.perf_counter() - started


def peak_rss_mb(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall time and the peak RSS of the largest process the command started."""
    probe = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = run([sys.executable, "-c", probe, *args], env=env, cwd=cwd).stdout.split()
    return float(out[0]), int(out[1]) / 1024


def render(destination: Path, **data: str) -> float:
    shutil.rmtree(destination, ignore_errors=True)
    # HEAD: this checkout, not the latest release tag.
    args = ["copier", "copy", "--trust", "--defaults", "--quiet", "--vcs-ref=HEAD"]
    for key, value in data.items():
        args += ["--data", f"{key}={value}"]
    return timed([*args, str(ROOT), str(destination)])


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Distinct free ports: all held open at once, so no two answers coincide."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def wait_http(url: str, timeout: float = 120.0, body: bytes | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(
                url, data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout} s")


def post(url: str, body: dict[str, object]) -> object:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def process_tree_rss_mb(root_pid: int) -> dict[int, float]:
    """RSS of every process under root_pid, read from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(re.search(r"PPid:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        rss[pid] = int(found.group(1)) / 1024 if found else 0.0
    tree = {root_pid}
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                changed = True
    return {pid: rss.get(pid, 0.0) for pid in tree}


def wrk(url: str, body: str, connections: int, seconds: int, workdir: Path) -> dict[str, float]:
    script = workdir / "request.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body)}\n"
    )
    threads = 1 if connections == 1 else 2
    out = run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ]
    ).stdout
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def percentile(label: str) -> float:
        value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * units[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "p50_ms": percentile("50"),
        "p99_ms": percentile("99"),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "errors": float(errors.group(1)) if errors else 0.0,
    }


def stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)


def start(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            args, env=env, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def v2_datatype(value: object) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FP64"
    return "BYTES"


def start_model_server(
    venv_bin: Path, env: dict[str, str], home: Path, ports: list[int]
) -> subprocess.Popen[bytes]:
    """The project's `model-server`: MLServer and its MLflow runtime on the champion.

    What `serving: kserve | seldon` runs locally, and what their clusters run (MLServer
    1.7.1 in its own environment, `uv tool run`, as the project does it).
    """
    server_env = {
        **env,
        f"{ENV_PREFIX}MODEL_SERVER_PORT": str(ports[0]),
        f"{ENV_PREFIX}MODEL_SERVER_GRPC_PORT": str(ports[1]),
        f"{ENV_PREFIX}MODEL_SERVER_METRICS_PORT": str(ports[2]),
    }
    return start(
        [str(venv_bin / CLI), "model-server"], server_env, home, home / "bench-model-server.log"
    )


def serving_benchmark(project: Path, env: dict[str, str], seconds: int, label: str) -> list[dict]:
    """Each serving choice against `mlflow models serve`, one worker each, same champion.

    bentoml: the service with the model in its process. kserve and seldon (the same
    local path): the service as the transformer in front of `model-server` (MLServer,
    V2 protocol), and MLServer spoken to directly over V2.
    """
    venv_bin = project / ".venv" / "bin"
    home = Path(env[f"{ENV_PREFIX}HOME"])
    row = json.loads(
        run(
            [
                str(venv_bin / "python"),
                "-c",
                "import pandas as pd, json, sys\n"
                f"f = pd.read_parquet('{home}/data/customer_features.parquet')\n"
                "print(json.dumps(f.drop(columns=['customer_id','event_timestamp']).tail(1).to_dict('records')[0]))",
            ],
            cwd=project,
        ).stdout
    )
    # Every server's ports at once: one chosen later could be one not yet bound.
    ours_port, mlflow_port, transformer_port, *mlserver_ports = free_ports(6)
    mlserver_port = mlserver_ports[0]
    ours_env = {**env, f"{ENV_PREFIX}PORT": str(ours_port), f"{ENV_PREFIX}WORKERS": "1"}
    ours = start(
        [str(venv_bin / CLI), "serve", "--port", str(ours_port)],
        ours_env,
        project,
        home / "bench-ours.log",
    )
    # mlflow models serve execs `uvicorn` by name: the project's venv must be on PATH.
    mlflow_env = {
        **env,
        "MLFLOW_TRACKING_URI": env.get(f"{ENV_PREFIX}TRACKING_URI")
        or f"sqlite:///{home}/mlflow.db",
        "PATH": f"{venv_bin}{os.pathsep}{env['PATH']}",
    }
    theirs = start(
        [
            str(venv_bin / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{MODEL}@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "--workers",
            "1",
        ],
        mlflow_env,
        project,
        home / "bench-mlflow.log",
    )
    mlserver = start_model_server(venv_bin, env, home, mlserver_ports)
    transformer = start(
        [
            str(venv_bin / CLI),
            "transformer",
            "--model_name",
            MODEL,
            "--predictor_host",
            f"127.0.0.1:{mlserver_port}",
            "--http_port",
            str(transformer_port),
        ],
        {**env, f"{ENV_PREFIX}WORKERS": "1"},
        project,
        home / "bench-transformer.log",
    )
    results = []
    try:
        ours_url = f"http://127.0.0.1:{ours_port}"
        wait_http(f"{ours_url}/readyz")
        wait_http(f"http://127.0.0.1:{mlflow_port}/ping")
        entity_body = json.dumps({"customer_id": 1001})
        row_body = json.dumps({"features": row})
        mlflow_body = json.dumps(
            {"dataframe_split": {"columns": list(row), "data": [list(row.values())]}}
        )
        post(f"{ours_url}/predict", json.loads(entity_body))  # warm-up, and fail loudly if broken
        post(f"http://127.0.0.1:{mlflow_port}/invocations", json.loads(mlflow_body))
        mlserver_url = f"http://127.0.0.1:{mlserver_port}/v2/models/{MODEL}/infer"
        wait_http(f"http://127.0.0.1:{mlserver_port}/v2/models/{MODEL}/ready")
        v2_body = json.dumps(
            {
                "parameters": {"content_type": "pd"},
                "inputs": [
                    {"name": name, "shape": [1], "datatype": v2_datatype(value), "data": [value]}
                    for name, value in row.items()
                ],
            }
        )
        post(mlserver_url, json.loads(v2_body))
        transformer_url = f"http://127.0.0.1:{transformer_port}"
        wait_http(f"{transformer_url}/readyz")
        post(f"{transformer_url}/predict", json.loads(entity_body))
        cases = [
            (f"{label}: bentoml, entity id (online lookup)", f"{ours_url}/predict", entity_body),
            (f"{label}: bentoml, full row", f"{ours_url}/predict", row_body),
            (
                f"{label}: kserve/seldon, transformer -> MLServer, entity id",
                f"{transformer_url}/predict",
                entity_body,
            ),
            (
                f"{label}: kserve/seldon, transformer -> MLServer, full row",
                f"{transformer_url}/predict",
                row_body,
            ),
            (
                f"{label}: mlflow models serve, full row",
                f"http://127.0.0.1:{mlflow_port}/invocations",
                mlflow_body,
            ),
            (f"{label}: kserve/seldon, MLServer direct, V2 full row", mlserver_url, v2_body),
        ]
        for name, url, body in cases:
            single = wrk(url, body, 1, seconds, home)
            loaded = wrk(url, body, 16, seconds, home)
            results.append(
                {
                    "case": name,
                    "p50_ms": single["p50_ms"],
                    "p99_ms": single["p99_ms"],
                    "rps_16": loaded["rps"],
                    "errors": single["errors"] + loaded["errors"],
                }
            )
        tree = process_tree_rss_mb(ours.pid)
        results.append(
            {
                "case": f"{label}: service processes RSS MB",
                "rss_mb": sorted(tree.values(), reverse=True),
            }
        )
    finally:
        stop(ours)
        stop(theirs)
        stop(transformer)
        stop(mlserver)
    return results


def print_serving(serving: list[dict]) -> None:
    print("\n== serving (1 worker each; wrk on loopback) ==")
    print(f"{'case':72s} {'p50 ms':>8s} {'p99 ms':>8s} {'rps@16':>9s} {'errors':>7s}")
    for row_result in serving:
        if "rss_mb" in row_result:
            print(f"{row_result['case']:72s} {row_result['rss_mb']}")
            continue
        print(
            f"{row_result['case']:72s} {row_result['p50_ms']:8.2f} {row_result['p99_ms']:8.2f} "
            f"{row_result['rps_16']:9.0f} {row_result['errors']:7.0f}"
        )


def serving_only(out: Path, seconds: int) -> None:
    """The serving table alone, embedded: without and with the feature store."""
    serving: list[dict] = []
    for label, data in (
        ("feature_store=false", {}),
        ("feature_store=true", {"team_size": "growth", "feature_store": "true"}),
    ):
        name = label.replace("=", "-")
        project, home = out / f"serving-{name}", out / f"serving-home-{name}"
        shutil.rmtree(home, ignore_errors=True)
        render(project, **data)
        env = {
            **os.environ,
            f"{ENV_PREFIX}HOME": str(home),
            "PREFECT_HOME": str(home / "prefect"),
        }
        run(["uv", "sync", "--quiet"], cwd=project, env=env)
        run([str(project / ".venv/bin" / CLI), "train"], cwd=project, env=env)
        serving += serving_benchmark(project, env, seconds, label)
    print_serving(serving)
    (out / "serving.json").write_text(json.dumps(serving, indent=2))
    print(f"\nresults: {out / 'serving.json'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per case")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench")
    parser.add_argument(
        "--serving-only",
        action="store_true",
        help="only the serving table, embedded (with and without the feature store)",
    )
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed for the serving benchmark: apt-get install wrk")
    out: Path = options.out
    out.mkdir(parents=True, exist_ok=True)
    if options.serving_only:
        serving_only(out, options.seconds)
        return
    numbers: dict[str, object] = {}

    renders = [render(out / f"render-{i}") for i in range(5)]
    numbers["render_s_median"] = statistics.median(renders)

    # Copy -> first served prediction, with a warm package cache.
    project = out / "project"
    home = out / "home"
    shutil.rmtree(home, ignore_errors=True)
    env = {**os.environ, f"{ENV_PREFIX}HOME": str(home), "PREFECT_HOME": str(home / "prefect")}
    started = time.perf_counter()
    render(project)
    run(["uv", "sync", "--quiet"], cwd=project, env=env)
    train_wall, train_rss = peak_rss_mb([str(project / ".venv/bin" / CLI), "train"], env, project)
    port = free_port()
    server = start(
        [str(project / ".venv/bin" / CLI), "serve", "--port", str(port)],
        env,
        project,
        out / "first.log",
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz")
        post(f"http://127.0.0.1:{port}/predict", {"customer_id": 1001})
        numbers["copy_to_first_prediction_s"] = time.perf_counter() - started
    finally:
        stop(server)
    numbers["train_wall_s"] = train_wall
    numbers["train_peak_rss_mb"] = train_rss

    helps = [timed([str(project / ".venv/bin" / CLI), "--help"]) for _ in range(5)]
    numbers["cli_help_s_median"] = statistics.median(helps)

    demo_home = out / "demo-home"
    shutil.rmtree(demo_home, ignore_errors=True)
    demo_env = {
        **env,
        f"{ENV_PREFIX}HOME": str(demo_home),
        "PREFECT_HOME": str(demo_home / "prefect"),
    }
    numbers["demo_wall_s"], numbers["demo_peak_rss_mb"] = peak_rss_mb(
        [str(project / ".venv/bin" / CLI), "demo"], demo_env, project
    )
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    numbers["generated_tests_s"] = timed(
        ["uv", "run", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project, env=clean_env
    )

    serving = serving_benchmark(project, env, options.seconds, "feature_store=false")
    fs_project, fs_home = out / "project-fs", out / "home-fs"
    shutil.rmtree(fs_home, ignore_errors=True)
    render(fs_project, team_size="growth", feature_store="true")
    fs_env = {
        **os.environ,
        f"{ENV_PREFIX}HOME": str(fs_home),
        "PREFECT_HOME": str(fs_home / "prefect"),
    }
    run(["uv", "sync", "--quiet"], cwd=fs_project, env=fs_env)
    run([str(fs_project / ".venv/bin" / CLI), "train"], cwd=fs_project, env=fs_env)
    serving += serving_benchmark(fs_project, fs_env, options.seconds, "feature_store=true")

    # The same project against its local stack (tests/stack/services.py): MLflow server
    # on Postgres + S3 API, Feast registry in Postgres and online store in Redis, Postgres
    # inference log, Prefect server. Train time there vs embedded, then serving.
    stack_root = Path(tempfile.mkdtemp(prefix="bench-stack-"))
    stack = subprocess.Popen(
        [
            str(fs_project / ".venv/bin/python"),
            str(ROOT / "bench" / "stack_up.py"),
            str(fs_project),
            str(stack_root),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if stack.stdout is None:
            raise RuntimeError("the stack process has no output pipe")
        endpoints = json.loads(stack.stdout.readline())
        numbers["stack_start_s"] = endpoints["started_in"]
        stack_home = out / "home-stack"
        shutil.rmtree(stack_home, ignore_errors=True)
        stack_env = {
            **fs_env,
            # Emulator endpoints and credentials (the object store stand-in).
            **endpoints["env"],
            f"{ENV_PREFIX}HOME": str(stack_home),
            f"{ENV_PREFIX}TRACKING_URI": endpoints["tracking_uri"],
            f"{ENV_PREFIX}FEATURE_REGISTRY_URL": endpoints["databases"]["feast"],
            f"{ENV_PREFIX}ONLINE_STORE_URL": endpoints["online_store_url"],
            f"{ENV_PREFIX}INFERENCE_LOG_URL": endpoints["databases"]["monitoring"],
            "PREFECT_API_URL": endpoints["prefect_api_url"],
            "PREFECT_HOME": str(stack_home / "prefect"),
        }
        embedded_home = out / "home-embedded-train"
        shutil.rmtree(embedded_home, ignore_errors=True)
        embedded_env = {
            **fs_env,
            f"{ENV_PREFIX}HOME": str(embedded_home),
            "PREFECT_HOME": str(embedded_home / "prefect"),
        }
        for name, train_env in (("embedded", embedded_env), ("stack", stack_env)):
            run([str(fs_project / ".venv/bin" / CLI), "data"], cwd=fs_project, env=train_env)
            numbers[f"train_{name}_s"] = timed(
                [str(fs_project / ".venv/bin" / CLI), "train"], cwd=fs_project, env=train_env
            )
        serving += serving_benchmark(
            fs_project,
            stack_env,
            options.seconds,
            "stack: MLflow server, Feast registry Postgres + Redis, Postgres inference log",
        )
    finally:
        stack.communicate("")
        shutil.rmtree(stack_root, ignore_errors=True)

    print("\n== template and project ==")
    for key, value in numbers.items():
        print(f"{key:32s} {value:10.3f}" if isinstance(value, float) else f"{key:32s} {value}")
    print_serving(serving)
    # The production check over a growing inference log (parquet), without retraining.
    checks = []
    for rows in (10_000, 100_000, 1_000_000):
        shutil.rmtree(home / "inference_log", ignore_errors=True)
        probe = (
            "import resource, subprocess, sys\n"
            "out = subprocess.run(sys.argv[1:], check=True, capture_output=True, text=True)\n"
            "print(out.stdout.split()[0], resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        )
        script = [str(project / ".venv/bin/python"), str(ROOT / "bench" / "production_check.py")]
        seconds, rss = run(
            [sys.executable, "-c", probe, *script, str(home), str(rows)], env=env, cwd=project
        ).stdout.split()
        checks.append({"rows": rows, "check_s": float(seconds), "peak_rss_mb": int(rss) / 1024})

    print("\n== production check (drift, prediction drift, live quality; no retraining) ==")
    for check in checks:
        print(
            f"{check['rows']:>9,d} rows  {check['check_s']:6.1f} s  {check['peak_rss_mb']:7.0f} MB"
        )
    (out / "results.json").write_text(
        json.dumps({"numbers": numbers, "serving": serving, "checks": checks}, indent=2)
    )
    print(f"\nresults: {out / 'results.json'}")


if __name__ == "__main__":
    main()
