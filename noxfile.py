"""Tasks of the template repository: `nox -s lint`, `nox -s tests`, `nox -s docs`, `nox -s demo`,
`nox -s bench`, `nox -s containers`.

Each session installs one dependency group of pyproject.toml into its own
environment (uv when present). `nox` alone runs lint and tests.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"  # nox.project.dependency_groups
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "tests"]

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
DEMO_DIR = ROOT / "build" / "demo"
PYTHON_SOURCES = ["extensions", "tests", "bench", "migrations", "containers", "noxfile.py"]


# Servers and checkers the tests run for real, by the Debian package that has them.
# (No Docker engine is assumed: the stack tests start these on loopback.)
SYSTEM_TOOLS = {
    "initdb": "postgresql",
    "redis-server": "redis-server",
    # The gcp and azure stack suites run Redis with TLS on a throwaway CA.
    "openssl": "openssl",
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "prometheus-pushgateway": "prometheus-pushgateway",
    "amtool": "prometheus-alertmanager",
    "docker-compose": "docker-compose",
    # Azure projects' tests run Azurite, an npm package, through npx.
    "npx": "npm",
    # The container harness (tests/test_containers.py): the projects' Makefiles, and the
    # Debian 13 tree podman 5 runs from when no Docker engine answers (containers/).
    "make": "make",
    "mmdebstrap": "mmdebstrap",
}


class StepTimer:
    """Times a session's steps; after each one, logs every step so far on one line.

    CI runs against a time budget; a failed step still gets its row, and the last
    line is the whole table.
    """

    def __init__(self, session: nox.Session) -> None:
        self.session = session
        self.rows: list[tuple[str, float, str]] = []

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        outcome = "failed"
        try:
            yield
            outcome = "ok"
        finally:
            self.rows.append((name, time.monotonic() - started, outcome))
            self.session.log(
                "time by step: "
                + "; ".join(
                    f"{step} {seconds:.0f} s ({result})" for step, seconds, result in self.rows
                )
            )


def install_group(session: nox.Session, group: str) -> None:
    session.install(*nox.project.dependency_groups(PYPROJECT, group))


def _have(tool: str) -> bool:
    # PostgreSQL's server programs live in a versioned directory, off PATH.
    return bool(shutil.which(tool) or any(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}")))


def ensure_system_tools(session: nox.Session) -> None:
    """Install the missing servers with apt-get (Debian/Ubuntu), or say what is missing."""
    missing = sorted({package for tool, package in SYSTEM_TOOLS.items() if not _have(tool)})
    if not missing:
        return
    if shutil.which("apt-get") is None:
        session.error(f"install these packages (or their equivalents) first: {' '.join(missing)}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run(*sudo, "apt-get", "update", "-qq", external=True)
    session.run(
        *sudo,
        "apt-get",
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        *missing,
        external=True,
        env=env,
    )


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff on the template repository's own Python (rendered output is linted by the tests)."""
    install_group(session, "lint")
    session.run("ruff", "check", *PYTHON_SOURCES)
    session.run("ruff", "format", "--check", *PYTHON_SOURCES)


@nox.session
def tests(session: nox.Session) -> None:
    """The template's test suite: validators, every answer combination, README commands.

    Arguments after `--` replace the default pytest arguments, e.g.
    `nox -s tests -- -m "not slow" -n 2` for the fast part (no generated suites,
    no demo run), about 10 s.
    """
    steps = StepTimer(session)
    with steps("system packages (apt-get when missing)"):
        ensure_system_tools(session)
    with steps("test environment (uv)"):
        install_group(session, "test")
    # Two workers: a generated suite spends much of its time waiting on servers
    # it starts, so on 2 cores the whole matrix runs about 1.7x faster. Work
    # stealing keeps the slow tests from queueing behind one worker.
    default = ["-n", "2", "--dist", "worksteal", "-m", "not containers"]
    if not session.posargs:
        # Said on every run, not skipped in silence: the compose stacks are not in CI yet.
        session.log(
            "not run here: the compose stacks (-m containers; `nox -s containers`). Their "
            "covering set passes (four combinations, 31-41 min with a warm engine and cached "
            "stand-ins); a fresh machine adds ~25 min of engine, stand-in and image builds. "
            "CI's 40-minute budget cannot hold it (containers/README.md)."
        )
    with steps("pytest (its parts: the 'time by part' table)"):
        session.run("pytest", *(session.posargs or default))


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site strictly (warnings fail) into build/site."""
    install_group(session, "docs")
    # Material's notice about its successor would print on every build.
    session.env["NO_MKDOCS_2_WARNING"] = "1"
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "build" / "site"))


@nox.session
def demo(session: nox.Session) -> None:
    """Render the default project into build/demo (fresh each time) and run its whole loop.

    Arguments after `--` go to `copier copy`, e.g. `nox -s demo -- --data team_size=growth`.
    """
    install_group(session, "render")
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    # --vcs-ref=HEAD renders this checkout (uncommitted changes included) instead
    # of the latest release tag; --trust lets copier load extensions/mlops.py.
    session.run(
        "copier",
        "copy",
        "--trust",
        "--defaults",
        "--vcs-ref=HEAD",
        *session.posargs,
        str(ROOT),
        str(DEMO_DIR),
    )
    answers = (DEMO_DIR / ".copier-answers.yml").read_text(encoding="utf-8")
    slug = re.search(r"^project_slug: (\S+)$", answers, re.MULTILINE)
    if slug is None:
        session.error("the answers file records no project_slug")
    # In the project's own environment (build/demo/.venv), as a user would run it:
    # nox points VIRTUAL_ENV and UV_PROJECT_ENVIRONMENT at this session's.
    project_env = {"VIRTUAL_ENV": None, "UV_PROJECT_ENVIRONMENT": None}
    session.run("uv", "run", "--directory", str(DEMO_DIR), slug[1], "demo", env=project_env)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks that print numbers (no assertions); see bench/run.py for what they measure.

    Arguments after `--` go to bench/run.py, e.g. `nox -s bench -- --seconds 5`.
    """
    if shutil.which("wrk") is None:
        session.error("the serving benchmark drives load with wrk: apt-get install wrk")
    # Precompiled bytecode, as in a built image: start-up numbers then do not depend
    # on whether the machine lets Python write .pyc files (PYTHONDONTWRITEBYTECODE).
    session.env["UV_COMPILE_BYTECODE"] = "1"
    install_group(session, "render")
    project_env = {"VIRTUAL_ENV": None, "UV_PROJECT_ENVIRONMENT": None}
    session.run("python", "bench/run.py", *session.posargs, env=project_env)


@nox.session
def containers(session: nox.Session) -> None:
    """Rendered projects' compose stacks for real (containers/README.md): images from their
    Dockerfiles, `make up`, `make train`, runtime checks, down/up, the stack suite in compose
    mode. Uses a Docker engine when one answers, else sets podman up (root, Debian).

    Arguments after `--` go to containers/harness.py, e.g.
    `nox -s containers -- --combination cloud=aws,team_size=growth,feature_store=true`.
    """
    if shutil.which("make") is None:
        session.error("the harness runs the projects' Makefiles: apt-get install make")
    install_group(session, "render")
    # The rendered projects' own environments: uv's, not this session's.
    session.run(
        "python",
        str(ROOT / "containers" / "harness.py"),
        *session.posargs,
        env={"VIRTUAL_ENV": None, "UV_PROJECT_ENVIRONMENT": None},
    )
