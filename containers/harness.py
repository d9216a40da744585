#!/usr/bin/env python3
"""Run rendered projects' compose stacks for real: `nox -s containers` (README.md here).

For each combination asked for (``--combination cloud=aws,team_size=enterprise,...``,
default: the covering set below) the harness renders the project, then:

1. ``make up`` (``docker compose up --detach --build --wait``) with a generated ``.env``;
2. checks every running container's main process is not root, every health check that
   passed has a server behind it, and a killed service container comes back by its
   restart policy;
3. ``make train``, waits for the service to serve the champion, and scores a few rows;
4. ``docker compose down`` then ``make up``: the registered versions, runs, artifacts,
   feature values and logged predictions are all still there;
5. the project's stack suite with ``STACK_MODE=compose`` attached to that running
   stack (``STACK_COMPOSE_PROJECT``: the same containers, no second ``up``), then
   ``docker compose down --volumes``.

The engine: Docker when one answers; otherwise podman, set up by setup-engine.sh (as
root, on Debian), with the stand-in images of build-standins.sh and the health-check
driver. Everything started is stopped by PID at the end; the engine itself only if
this run started it. Prints a timing table and ``images: service <N> MB, jobs <N> MB``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CTR_ROOT = Path(os.environ.get("CTR_ROOT", Path.home() / ".cache" / "container-engine"))

# The covering set: every cloud's compose variant (object store stand-in, online store),
# every tier (Grafana from growth, Alertmanager for enterprise), with and without the
# feature store; so every service compose.yaml can hold runs at least once. Four is the
# fewest: the four clouds render four different object stores.
COVERING_SET: tuple[dict[str, object], ...] = (
    {"cloud": "local", "team_size": "solo", "feature_store": False},
    {"cloud": "aws", "team_size": "enterprise", "feature_store": True},
    {"cloud": "gcp", "team_size": "growth", "feature_store": True},
    {"cloud": "azure", "team_size": "enterprise", "feature_store": False},
)


@dataclass
class Timings:
    rows: list[tuple[str, float]] = field(default_factory=list)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        print(f"--- {name}", flush=True)
        started = time.monotonic()
        try:
            yield
        finally:
            self.rows.append((name, time.monotonic() - started))
            print(f"--- {name}: {self.rows[-1][1]:.1f} s", flush=True)

    def table(self) -> str:
        width = max(len(name) for name, _ in self.rows)
        return "\n".join(f"{name:<{width}}  {seconds:8.1f} s" for name, seconds in self.rows)


def run(command: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run a command; on failure raise with its output (what a CI log needs)."""
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited with {done.returncode}\n{done.stdout[-4000:]}"
            f"\n{done.stderr[-4000:]}"
        )
    return done.stdout


def wait_for(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
            if check():
                return
        time.sleep(0.5)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        return False


def http_json(url: str, body: object | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


# ---------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------


@dataclass
class Engine:
    env: dict[str, str]
    podman: str | None  # None: a Docker engine, which schedules health checks itself
    started_service: bool

    def docker(self, *args: str, cwd: Path | None = None) -> str:
        return run(["docker", *args], cwd=cwd, env=self.env)


def docker_answers(env: dict[str, str]) -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return done.returncode == 0 and bool(done.stdout.strip())


def setup_engine(timings: Timings, share: list[Path]) -> Engine:
    if docker_answers(dict(os.environ)) and not os.environ.get("CONTAINERS_FORCE_PODMAN"):
        print("a Docker engine answers: using it", flush=True)
        return Engine(dict(os.environ), None, started_service=False)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit("no Docker engine answers, and setting podman up needs root on Debian")
    pid_file = CTR_ROOT / "podman-service.pid"
    before = pid_file.read_text() if pid_file.exists() else None
    env = dict(os.environ, CTR_ROOT=str(CTR_ROOT), CTR_SHARE=" ".join(map(str, share)))
    with timings.step("engine setup"):
        run(["sh", str(HERE / "setup-engine.sh")], env=env)
    after = pid_file.read_text() if pid_file.exists() else None
    for line in (CTR_ROOT / "env.sh").read_text().splitlines():
        if line.startswith("export "):
            for assignment in line.removeprefix("export ").split():
                name, _, value = assignment.partition("=")
                env[name] = value
    return Engine(env, env["PODMAN"], started_service=after is not None and after != before)


def build_standins(engine: Engine, timings: Timings) -> None:
    with timings.step("stand-ins build"):
        print(run(["sh", str(HERE / "build-standins.sh")], env=engine.env), flush=True)


def teardown(engine: Engine) -> None:
    if engine.podman is not None:
        # Each build replaces the project's images; the replaced ones (untagged, no
        # children) go, or the engine's own store grows by gigabytes a run (it once
        # filled this machine's disk). Build-cache layers stay. A Docker engine is
        # the user's: its images are left alone.
        try:
            # Working containers of builds that were interrupted (buildah's, not
            # podman's: `--external`) would pin the layers the prune is for.
            listed = run(
                [engine.podman, "ps", "--external", "--all", "--format", "{{.ID}} {{.Status}}"],
                env=engine.env,
            )
            leftovers = [
                line.split()[0] for line in listed.splitlines() if line.endswith(" Storage")
            ]
            if leftovers:
                run([engine.podman, "rm", "--force", *leftovers], env=engine.env)
            run([engine.podman, "image", "prune", "--force"], env=engine.env)
        except RuntimeError as error:
            # e.g. a build container an interrupted build left holds a layer: the
            # engine must still be stopped below; the next prune takes what is left.
            print(f"warning: {str(error).splitlines()[0]}", flush=True)
    if engine.started_service:
        run(["sh", str(HERE / "teardown.sh")], env=engine.env)


@contextlib.contextmanager
def health_driver(engine: Engine, configs: list[Path], log: Path) -> Iterator[None]:
    """podman only: the loop that runs health checks (no systemd here); stopped by PID."""
    if engine.podman is None:
        yield
        return
    with log.open("ab") as out:
        driver = subprocess.Popen(
            [sys.executable, str(HERE / "healthcheck_driver.py"), engine.podman]
            + [str(c) for c in configs],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield
    finally:
        driver.terminate()
        driver.wait(30)


# ---------------------------------------------------------------------------
# One project
# ---------------------------------------------------------------------------


@dataclass
class Project:
    path: Path
    answers: dict[str, object]
    engine: Engine
    slug: str = ""

    @property
    def id(self) -> str:
        parts = [
            str(v) if not isinstance(v, bool) else (k if v else f"no_{k}")
            for k, v in self.answers.items()
        ]
        return "-".join(parts)

    def compose(self, *args: str) -> str:
        return self.engine.docker("compose", *args, cwd=self.path)

    def make(self, target: str) -> str:
        return run(["make", target], cwd=self.path, env=self.engine.env)

    def env_values(self) -> dict[str, str]:
        values = {}
        for line in (self.path / ".env").read_text().splitlines():
            name, _, value = line.partition("=")
            if value and not line.startswith("#"):
                values[name] = value
        return values

    def containers(self) -> dict[str, str]:
        """Running service name -> container id."""
        ids = self.compose("ps", "--quiet").split()
        found = {}
        for cid in ids:
            service = self.engine.docker(
                "inspect",
                "--format",
                '{{ index .Config.Labels "com.docker.compose.service" }}',
                cid,
            ).strip()
            found[service] = cid
        return found


def render(
    answers: dict[str, object], destination: Path, engine: Engine, template: Path
) -> Project:
    data = [
        f"--data={k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in answers.items()
    ]
    shutil.rmtree(destination, ignore_errors=True)
    run(
        [
            "copier",
            "copy",
            "--trust",
            "--defaults",
            "--vcs-ref=HEAD",
            "--quiet",
            *data,
            str(template),
            str(destination),
        ]
    )
    slug = re.search(
        r"^project_slug: (\S+)$", (destination / ".copier-answers.yml").read_text(), re.MULTILINE
    )
    assert slug is not None
    # The images install what uv.lock pins: a user runs `uv lock` (make does) first.
    clean = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }
    run(["uv", "lock", "--quiet"], cwd=destination, env=clean)
    # .env as the README says: .env.example with every change-me replaced.
    lines = []
    for line in (destination / ".env.example").read_text().splitlines():
        name, _, value = line.partition("=")
        lines.append(f"{name}={secrets.token_hex(12)}" if value.strip() == "change-me" else line)
    (destination / ".env").write_text("\n".join(lines) + "\n")
    return Project(destination, answers, engine, slug[1])


def route_alerts_to_this_machine(project: Project) -> None:
    """Alertmanager (tiers that route alerts) posts to a free port on this machine, where
    the stack suite's receiver listens when it attaches to the running stack."""
    env = project.path / ".env"
    lines = env.read_text().splitlines()
    if not any(line.startswith("ALERT_WEBHOOK_URL=") for line in lines):
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://host.docker.internal:{port}/alerts"
    lines = [
        f"ALERT_WEBHOOK_URL={url}" if line.startswith("ALERT_WEBHOOK_URL=") else line
        for line in lines
    ]
    env.write_text("\n".join(lines) + "\n")


def check_not_root(project: Project) -> None:
    """Every running container's main process runs as a non-root user (read in /proc)."""
    for service, cid in project.containers().items():
        status = project.engine.docker("exec", cid, "cat", "/proc/1/status")
        uid = re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE)
        assert uid is not None, f"{service}: no Uid in /proc/1/status"
        assert uid[1] != "0", f"{service}: its main process runs as root"
        print(f"    {service}: uid {uid[1]}", flush=True)


# Where each long-running service answers from this machine once healthy (compose.yaml's
# published ports), and what must answer there.
SERVES = {
    "postgres": None,  # pg_isready over TCP is its health check: checked by the stack suite
    "mlflow": "http://127.0.0.1:5000/health",
    "prefect-server": "http://127.0.0.1:4200/api/health",
    "service": "http://127.0.0.1:3000/livez",
    "pushgateway": "http://127.0.0.1:9091/-/healthy",
    "prometheus": "http://127.0.0.1:9090/-/ready",
    "alertmanager": "http://127.0.0.1:9093/-/ready",
    "grafana": "http://127.0.0.1:3001/api/health",
}


def check_healthy_serve(project: Project) -> None:
    for service, cid in project.containers().items():
        health = project.engine.docker(
            "inspect", "--format", "{{ if .State.Health }}{{ .State.Health.Status }}{{ end }}", cid
        ).strip()
        if not health:
            continue
        assert health == "healthy", f"{service} is {health} after up --wait"
        url = SERVES.get(service)
        if url:
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200, f"{service}: {url} answered {response.status}"


def check_restart_policy(project: Project) -> float:
    """Kill the model service's main process; its restart policy must bring it back healthy."""
    cid = project.containers()["service"]
    before = int(project.engine.docker("inspect", "--format", "{{ .RestartCount }}", cid))
    started = time.monotonic()
    # SIGKILL to the container's main process, as the OOM killer would: not a `docker stop`,
    # which restart policies rightly ignore.
    pid = int(project.engine.docker("inspect", "--format", "{{ .State.Pid }}", cid))
    os.kill(pid, signal.SIGKILL)

    def back() -> bool:
        state = json.loads(project.engine.docker("inspect", "--format", "{{ json .State }}", cid))
        count = int(project.engine.docker("inspect", "--format", "{{ .RestartCount }}", cid))
        health = (state.get("Health") or state.get("Healthcheck") or {}).get("Status")
        return bool(count > before and state["Running"] and health == "healthy")

    wait_for(back, "the killed service container restarted and healthy", 180)
    wait_for(lambda: http_ok("http://127.0.0.1:3000/readyz"), "service ready", 120)
    return time.monotonic() - started


def snapshot(project: Project) -> dict[str, object]:
    """What must survive `down` and `up`: read from this machine through the stack's ports."""
    mlflow = "http://127.0.0.1:5000/api/2.0/mlflow"
    versions = http_json(f"{mlflow}/model-versions/search?max_results=1000").get(
        "model_versions", []
    )
    experiments = http_json(f"{mlflow}/experiments/search", {"max_results": 1000})["experiments"]
    runs = http_json(
        f"{mlflow}/runs/search",
        {
            "experiment_ids": [e["experiment_id"] for e in experiments],
            "max_results": 1000,
        },
    ).get("runs", [])
    run_ids = sorted(r["info"]["run_id"] for r in runs)
    # Every artifact of the champion's run, listed and one of them downloaded, via the proxy.
    champion = http_json(
        f"{mlflow}/registered-models/alias?name={versions[0]['name']}&alias=champion"
    )["model_version"]
    artifacts = "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts"
    listing = _walk(
        artifacts,
        champion["source"].split("mlflow-artifacts:/", 1)[-1].lstrip("/")
        if champion["source"].startswith("mlflow-artifacts:")
        else "",
    )
    state: dict[str, object] = {
        "model versions": sorted((v["name"], v["version"], v["run_id"]) for v in versions),
        "runs": run_ids,
        "champion artifacts": listing,
    }
    if project.answers.get("feature_store"):
        # Three served predictions: the service logs them within seconds (see settled_log).
        state["feature values"] = [
            http_json("http://127.0.0.1:3000/predict", {"customer_id": c})["probability"]
            for c in (1000, 1001, 1002)
        ]
    return state


def logged_predictions(project: Project) -> tuple[int, str]:
    """The inference log's row count and latest request id, read in PostgreSQL."""
    values = project.env_values()
    psql = ["exec", "-T", "postgres", "psql", "-U", values["POSTGRES_USER"], "-At"]
    count, _, latest = (
        project.compose(
            *psql, "-d", "monitoring", "-c", "SELECT count(*), max(request_id) FROM inference_log"
        )
        .strip()
        .partition("|")
    )
    return int(count), latest


def settled_log(project: Project, at_least: int) -> tuple[int, str]:
    """The log once the service has written every prediction it served: it writes in
    batches, and `down` would write the rest only at its clean stop."""
    wait_for(
        lambda: logged_predictions(project)[0] >= at_least,
        f"{at_least} predictions in the inference log",
        60,
    )
    return logged_predictions(project)


def _walk(base: str, path: str) -> list[tuple[str, int]]:
    listing = http_json(f"{base}?path={urllib.request.quote(path)}")
    found = []
    for item in listing.get("files", []):
        child = (
            f"{path}/{item['path']}".lstrip("/")
            if not item["path"].startswith(path)
            else item["path"]
        )
        if item.get("is_dir"):
            found += _walk(base, child)
        else:
            found.append((child, int(item.get("file_size", 0))))
    return sorted(found)


def score(project: Project, count: int = 5) -> None:
    for customer in range(1000, 1000 + count):
        body: dict[str, object] = {"customer_id": customer}
        answer = http_json("http://127.0.0.1:3000/predict", body)
        assert 0.0 <= answer["probability"] <= 1.0, answer


def stack_suite(project: Project, compose_project: str) -> None:
    """The project's stack suite against the running stack (its fixtures attach to it)."""
    env = {
        k: v
        for k, v in project.engine.env.items()
        if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "PYTHONPATH")
    }
    env["STACK_MODE"] = "compose"
    env["STACK_COMPOSE_PROJECT"] = compose_project
    output = run(
        [
            "uv",
            "run",
            "--quiet",
            "pytest",
            "-m",
            "stack",
            "-p",
            "no:cacheprovider",
            "-q",
            "--durations=10",
            # A test stuck on a socket prints every thread's stack instead of hanging mute.
            "-o",
            "faulthandler_timeout=300",
        ],
        cwd=project.path,
        env=env,
    )
    # The slowest tests and the summary line: where the suite's time goes.
    print(output[-3000:], flush=True)


def image_size_mb(engine: Engine, image: str) -> int:
    size = engine.docker("image", "inspect", "--format", "{{ .Size }}", image).strip()
    return round(int(size) / 1e6)


def base_image(dockerfile: Path) -> str:
    """The image the final stage starts from: what the project's layers sit on."""
    bases = re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.MULTILINE)
    return bases[-1]


def one_project(
    answers: dict[str, object], workdir: Path, engine: Engine, timings: Timings, template: Path
) -> tuple[int, int, float]:
    name = "-".join(str(v) for v in answers.values())
    with timings.step(f"{name}: render + uv lock"):
        project = render(answers, workdir / name, engine, template)
    route_alerts_to_this_machine(project)
    config = workdir / f"{name}.compose.json"
    config.write_text(project.compose("config", "--format", "json"))
    compose_project = json.loads(config.read_text())["name"]
    # A clean slate: volumes an interrupted earlier run left would skip the
    # database's init script (PostgreSQL runs it on an empty data directory only).
    project.compose("down", "--volumes", "--remove-orphans")
    with health_driver(engine, [config], workdir / f"{name}.healthcheck.log"):
        try:
            started = time.monotonic()
            with timings.step(f"{name}: make up (first: builds the images)"):
                project.make("up")
            up_cold = time.monotonic() - started
            with timings.step(f"{name}: runtime checks"):
                check_not_root(project)
                check_healthy_serve(project)
            with timings.step(f"{name}: make train + service ready"):
                project.make("train")
                wait_for(
                    lambda: http_ok("http://127.0.0.1:3000/readyz"),
                    "the service serving the champion",
                    180,
                )
                score(project)
            with timings.step(f"{name}: kill service, restart policy"):
                check_restart_policy(project)
            logged_start = logged_predictions(project)[0]
            before = snapshot(project)
            served = 3 if project.answers.get("feature_store") else 0
            logged_before = settled_log(project, logged_start + served)
            project.compose("down")
            started = time.monotonic()
            with timings.step(f"{name}: make up (warm, after down)"):
                project.make("up")
            up_warm = time.monotonic() - started
            wait_for(
                lambda: http_ok("http://127.0.0.1:3000/readyz"),
                "the service serving the champion again",
                180,
            )
            # Read before this snapshot serves anything new.
            logged_after = logged_predictions(project)
            assert logged_after == logged_before, (
                f"logged predictions changed across down/up: {logged_before} -> {logged_after}"
            )
            after = snapshot(project)
            for key, value in before.items():
                assert after[key] == value, f"{key} changed across down/up: {value} -> {after[key]}"
            kept = ", ".join([*before, "logged predictions"])
            print(f"    kept across down/up: {kept}", flush=True)
            with timings.step(f"{name}: stack suite (STACK_MODE=compose, attached)"):
                stack_suite(project, compose_project)
        finally:
            project.compose("down", "--volumes", "--remove-orphans")
    service = image_size_mb(engine, f"{project.slug}-service:local")
    jobs = image_size_mb(engine, f"{project.slug}-jobs:local")
    # Under podman the base is a stand-in (containers/README.md): its size is not
    # upstream's, so what the project adds on top is reported apart.
    for image, size in (("service", service), ("jobs", jobs)):
        base = base_image(project.path / "docker" / f"{image}.Dockerfile")
        base_mb = image_size_mb(engine, base)
        print(
            f"{name}: {image} image {size} MB = base {base} {base_mb} MB"
            f" + the project's layers {size - base_mb} MB",
            flush=True,
        )
    print(f"{name}: stack start-up {up_cold:.1f} s cold, {up_warm:.1f} s warm", flush=True)
    return service, jobs, up_warm


def parse_combination(text: str) -> dict[str, object]:
    answers: dict[str, object] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        answers[key] = {"true": True, "false": False}.get(value, value)
    return answers


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--combination",
        action="append",
        type=parse_combination,
        help="answers, e.g. cloud=aws,team_size=growth,feature_store=true",
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--template", type=Path, default=ROOT, help="the template to render (this checkout)"
    )
    args = parser.parse_args(argv)
    combos = args.combination or list(COVERING_SET)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="containers-"))
    workdir.mkdir(parents=True, exist_ok=True)
    timings = Timings()
    engine = setup_engine(timings, sorted({workdir.resolve(), ROOT, Path(tempfile.gettempdir())}))
    sizes: list[tuple[int, int, float]] = []
    summaries: list[str] = []
    try:
        if engine.podman is not None:
            build_standins(engine, timings)
        # Every combination runs, whatever the one before did: one failure hides no other.
        for answers in combos:
            name = "-".join(str(v) for v in answers.values())
            first = len(timings.rows)
            try:
                sizes.append(one_project(answers, workdir, engine, timings, args.template))
                verdict = "passed"
            except Exception as error:  # reported below, and in the exit status
                traceback.print_exc()
                verdict = f"FAILED ({type(error).__name__}: {str(error).splitlines()[0][:200]})"
            steps = ", ".join(
                f"{step.split(': ', 1)[-1]} {seconds:.0f} s"
                for step, seconds in timings.rows[first:]
            )
            summaries.append(f"combination {name}: {verdict}; {steps}")
    finally:
        print("\ntimings (a shared machine: wall clock is noisy)\n" + timings.table(), flush=True)
        print("\n".join(summaries), flush=True)
        teardown(engine)
    if sizes:
        service = max(s for s, _, _ in sizes)
        jobs = max(j for _, j, _ in sizes)
        startup = max(w for _, _, w in sizes)
        print(
            f"images: service {service} MB, jobs {jobs} MB; stack start-up {startup:.1f} s (warm)"
        )
    return 0 if len(sizes) == len(combos) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
