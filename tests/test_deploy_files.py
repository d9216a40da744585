"""The deploy files of rendered projects: the image workflow and the Kubernetes manifests.

Workflows, for every combination: actionlint (with shellcheck on the ``run:``
scripts) passes on every rendered workflow; the deploy workflow signs in with
GitHub's OIDC token (no stored key), reads the repository variables the cloud
contract names, and pushes images tagged by commit.

Manifests, for the projects that deploy to Kubernetes (the tiers that do, and
every tier with kserve or seldon; absent for the others): ``deploy/render.sh``
builds them with kubectl's kustomize, as the workflow does, with release.env
filled in as ``promote`` would; every document is checked against its schema,
strictly (unknown fields fail): core kinds with kubernetes-validate, KServe and
Seldon kinds with their upstream CRDs (tests/crd_schemas.py), and a document
that neither knows fails. The invariants that schemas cannot state hold too:
locked-down pods, probes on routes the generated suite exercises, the cloud's
workload identity on each ServiceAccount, settings that exist, Secrets
referenced but never shipped, images pinned. tests/test_serving_manifests.py
checks what the KServe and Seldon resources themselves must say.

The tools are real and required (the test group of pyproject.toml). Many
combinations render identical files, so each expensive check is cached by a hash
of what it reads and runs once per session (per xdist worker).
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

import crd_schemas
from helpers import (
    clean_env,
    extension_module,
    off_kubernetes,
    on_kubernetes,
    read_answers,
    run,
    serves_with,
    tool,
    where,
)

# The oldest Kubernetes minor the manifests support, and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.31", "1.37")

# Repository variables the deploy workflow reads per cloud (the cloud contract),
# and the cluster's coordinates for the tiers that deploy.
AUTH_VARIABLES = {
    "aws": {"AWS_REGION", "AWS_CI_ROLE_ARN"},
    "gcp": {"GCP_WORKLOAD_IDENTITY_PROVIDER", "GCP_CI_SERVICE_ACCOUNT"},
    "azure": {"AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_SUBSCRIPTION_ID"},
    "local": set(),
}
REGISTRY_VARIABLES = {
    "aws": {"ECR_REPOSITORY_URL"},
    "gcp": {"GCP_REGISTRY_URL"},
    "azure": {"ACR_LOGIN_SERVER"},
    "local": set(),
}
CLUSTER_VARIABLES = {
    "aws": {"CLUSTER_NAME"},
    "gcp": {"CLUSTER_NAME", "CLUSTER_LOCATION"},
    "azure": {"CLUSTER_NAME", "RESOURCE_GROUP"},
    "local": set(),
}
# How the workflow signs in: the action and the inputs that must name the variables.
SIGN_IN = {
    "aws": (
        "aws-actions/configure-aws-credentials",
        {"role-to-assume": "AWS_CI_ROLE_ARN", "aws-region": "AWS_REGION"},
    ),
    "gcp": (
        "google-github-actions/auth",
        {
            "workload_identity_provider": "GCP_WORKLOAD_IDENTITY_PROVIDER",
            "service_account": "GCP_CI_SERVICE_ACCOUNT",
        },
    ),
    "azure": (
        "azure/login",
        {
            "client-id": "AZURE_CLIENT_ID",
            "tenant-id": "AZURE_TENANT_ID",
            "subscription-id": "AZURE_SUBSCRIPTION_ID",
        },
    ),
}
# Inputs and names that carry long-lived keys: none may appear in any workflow.
KEY_INPUTS = {"aws-access-key-id", "aws-secret-access-key", "credentials_json", "creds"}
KEY_NAMES = re.compile(
    r"AWS_SECRET_ACCESS_KEY|AWS_ACCESS_KEY_ID|credentials_json|client-secret|"
    r"AZURE_CLIENT_SECRET|AZURE_CREDENTIALS|GOOGLE_APPLICATION_CREDENTIALS|service_account_key",
    re.IGNORECASE,
)
# A pinned action: owner/name (or a path in it) at a major version tag.
PINNED_ACTION = re.compile(r"^[\w.-]+/[\w./-]+@v\d+$")

# The workload-identity annotation per cloud, and the cloud.env key suffix that fills it.
IDENTITY = {
    "aws": ("eks.amazonaws.com/role-arn", "ROLE_ARN"),
    "gcp": ("iam.gke.io/gcp-service-account", "GSA_EMAIL"),
    "azure": ("azure.workload.identity/client-id", "IDENTITY_CLIENT_ID"),
}
WORKLOADS = ("service", "tracking", "jobs")
USES_AZURE_IDENTITY = {"azure.workload.identity/use": "true"}


# ---------------------------------------------------------------------------
# Reading rendered projects
# ---------------------------------------------------------------------------


def answers(project: Path) -> dict[str, Any]:
    return read_answers(project)


def kubernetes_tier(project: Path) -> bool:
    """What `on_kubernetes` says for the answers `project` was rendered with."""
    return on_kubernetes(answers(project))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def workflow(project: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(project / ".github" / "workflows" / "deploy.yml")
    # YAML 1.1 reads the key `on` as True.
    loaded["on"] = loaded.pop(True, loaded.get("on"))
    return loaded


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def action(step: dict[str, Any]) -> str:
    """The action a step uses without its version, or ""."""
    return str(step.get("uses", "")).partition("@")[0]


def variables_used(text: str) -> set[str]:
    return set(re.findall(r"vars\.([A-Z0-9_]+)", text))


def digest(*parts: bytes) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(hashlib.sha256(part).digest())
    return sha.hexdigest()


def tree_digest(root: Path) -> str:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return digest(*(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() for p in files))


def image_user(dockerfile: Path) -> int:
    """The numeric user of a Dockerfile's final stage (USER uid:gid)."""
    users = re.findall(r"^USER\s+(\d+)(?::\d+)?\s*$", dockerfile.read_text(), re.MULTILINE)
    assert users, f"{dockerfile} sets no numeric USER"
    return int(users[-1])


def settings_fields(project: Path) -> set[str]:
    """The field names of the generated Settings class."""
    package = answers(project)["package_name"]
    tree = ast.parse((project / "src" / package / "config.py").read_text())
    (settings,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings"]
    return {
        node.target.id
        for node in settings.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }


def env_prefix(project: Path) -> str:
    return f"{answers(project)['package_name'].upper()}_"


# ---------------------------------------------------------------------------
# Workflows
# ---------------------------------------------------------------------------

# Content hash -> actionlint's complaints ("" when clean), for this worker's session.
_ACTIONLINT: dict[str, str] = {}


def test_every_workflow_passes_actionlint(project: Path) -> None:
    actionlint, shellcheck = tool("actionlint"), tool("shellcheck")
    files = sorted((project / ".github" / "workflows").glob("*.yml"))
    assert "deploy.yml" in {f.name for f in files}

    complaints = {}
    for path in files:
        key = digest(path.read_bytes())
        if key not in _ACTIONLINT:
            done = run(
                [actionlint, "-shellcheck", shellcheck, "-pyflakes=", "-oneline", path],
                cwd=project,
                check=False,
            )
            _ACTIONLINT[key] = (done.stdout + done.stderr).strip() if done.returncode else ""
        complaints[path.name] = _ACTIONLINT[key]

    assert complaints == dict.fromkeys(complaints, "")


def test_no_workflow_holds_a_long_lived_key(project: Path) -> None:
    for path in sorted((project / ".github" / "workflows").glob("*.yml")):
        text = path.read_text(encoding="utf-8")
        # Only the run's own token (github.token) signs anything in.
        assert "secrets." not in text, path.name
        assert not KEY_NAMES.search(text), f"{path.name}: {KEY_NAMES.search(text)}"
        for job in load_yaml(path)["jobs"].values():
            for step in steps(job):
                assert not KEY_INPUTS & set(step.get("with", {})), f"{path.name}: {step}"


def test_deploy_workflow_signs_in_with_oidc(project: Path) -> None:
    cloud = answers(project)["cloud"]
    jobs = workflow(project)["jobs"]

    assert workflow(project)["permissions"] == {"contents": "read"}
    for name, job in jobs.items():
        used = {action(step) for step in steps(job)}
        if cloud == "local":
            # The run's GITHUB_TOKEN pushes to ghcr.io; no job asks for an OIDC token.
            assert "id-token" not in job.get("permissions", {}), name
            continue
        sign_in, inputs = SIGN_IN[cloud]
        if sign_in in used:
            assert job["permissions"].get("id-token") == "write", name
            (step,) = [s for s in steps(job) if action(s) == sign_in]
            assert {k: step["with"].get(k) for k in inputs} == {
                k: f"${{{{ vars.{v} }}}}" for k, v in inputs.items()
            }
    if cloud == "local":
        images = jobs["images"]
        assert images["permissions"].get("packages") == "write"
        (login,) = [s for s in steps(images) if action(s) == "docker/login-action"]
        assert login["with"]["registry"] == "ghcr.io"
        assert login["with"]["password"] == "${{ github.token }}"
    else:
        assert SIGN_IN[cloud][0] in {action(s) for s in steps(jobs["images"])}


def test_deploy_workflow_pushes_both_images_tagged_by_commit(project: Path) -> None:
    flow = workflow(project)
    assert flow["on"]["push"] == {"branches": ["main"]}
    assert "workflow_dispatch" in flow["on"]

    builds = [s for s in steps(flow["jobs"]["images"]) if action(s) == "docker/build-push-action"]
    assert {s["with"]["file"] for s in builds} == {
        "docker/service.Dockerfile",
        "docker/jobs.Dockerfile",
    }
    for build in builds:
        assert (project / build["with"]["file"]).is_file()
        assert build["with"]["push"] is True
        assert "${{ github.sha }}" in build["with"]["tags"]
        assert "latest" not in build["with"]["tags"]
    # Later jobs get the images by digest.
    outputs = flow["jobs"]["images"]["outputs"]
    assert all("@${{ steps." in value and ".digest }}" in value for value in outputs.values())

    for name, job in flow["jobs"].items():
        for step in steps(job):
            if "uses" in step:
                assert PINNED_ACTION.match(step["uses"]), f"{name}: {step['uses']}"


def test_deploy_workflow_reads_the_contract_variables(project: Path) -> None:
    cloud = answers(project)["cloud"]
    text = (project / ".github" / "workflows" / "deploy.yml").read_text(encoding="utf-8")
    expected = AUTH_VARIABLES[cloud] | REGISTRY_VARIABLES[cloud]
    if kubernetes_tier(project):
        expected |= CLUSTER_VARIABLES[cloud]
        if cloud != "local":
            expected |= {"DEPLOY_RUNNER"}

    assert variables_used(text) == expected
    # Each is named in the header comment, for whoever sets them.
    header = text.partition("\nname:")[0]
    assert {v for v in expected if v in header} == expected
    if kubernetes_tier(project):
        readme = (project / "deploy" / "README.md").read_text(encoding="utf-8")
        assert {v for v in expected - {"DEPLOY_RUNNER"} if f"`{v}`" in readme} == (
            expected - {"DEPLOY_RUNNER"}
        )
        assert "DEPLOY_RUNNER" in readme or cloud == "local"


def test_deploy_job_follows_the_tier(project: Path) -> None:
    jobs = workflow(project)["jobs"]
    if not kubernetes_tier(project):
        assert set(jobs) == {"images"}
        assert not (project / "deploy").exists()
        return
    (job_name,) = set(jobs) - {"images"}
    job = jobs[job_name]
    assert job["needs"] == "images"
    runs = "\n".join(str(step.get("run", "")) for step in steps(job))
    assert "deploy/render.sh" in runs
    assert (project / "deploy" / "render.sh").stat().st_mode & 0o111, "render.sh is executable"
    if answers(project)["cloud"] == "local":
        # No cluster is reachable from GitHub: the manifests are the run's artifact.
        assert "kubectl apply" not in runs
        assert "actions/upload-artifact" in {action(s) for s in steps(job)}
    else:
        assert "--without-namespace" in runs
        assert "kubectl apply" in runs
        assert "rollout status" in runs


# ---------------------------------------------------------------------------
# Kubernetes manifests
# ---------------------------------------------------------------------------


def cloud_values(cloud: str, slug: str) -> dict[str, str]:
    """Values of the shape Terraform outputs, for every key of cloud.env."""
    if cloud == "local":
        return {}
    identity = {
        "aws": lambda w: f"arn:aws:iam::111122223333:role/{slug}-{w}",
        "gcp": lambda w: f"{slug}-{w}@example-project.iam.gserviceaccount.com",
        "azure": lambda w: f"00000000-0000-0000-0000-00000000000{WORKLOADS.index(w) + 1}",
    }[cloud]
    suffix = IDENTITY[cloud][1]
    values = {f"{w.upper()}_{suffix}": identity(w) for w in WORKLOADS}
    values["MLFLOW_ARTIFACTS_DESTINATION"] = {
        "aws": f"s3://{slug}-mlflow-artifacts-x1/",
        "gcp": f"gs://{slug}-mlflow-artifacts-x1/",
        "azure": f"wasbs://{slug}-mlflow-artifacts@{slug.replace('-', '')}x1.blob.core.windows.net/",
    }[cloud]
    if cloud == "aws":
        values["AWS_REGION"] = "eu-west-1"
    return values


SERVICE_IMAGE = "registry.example.com/team/{slug}@sha256:" + "a" * 64
JOBS_IMAGE = "registry.example.com/team/{slug}:jobs-0123456789abcdef"


def kubectl_env() -> dict[str, str]:
    """This environment with kubectl (the test group's) first on PATH."""
    kubectl = Path(tool("kubectl"))
    return clean_env(PATH=f"{kubectl.parent}{os.pathsep}{os.environ.get('PATH', '')}")


# MLflow 3 model ids: the champion's and the challenger's artifacts in release.env, and
# their registry versions.
CHAMPION_ID, CHALLENGER_ID = "m-" + "1" * 32, "m-" + "2" * 32
CHAMPION_VERSION, CHALLENGER_VERSION = "7", "8"


def model_uri(project: Path, model_id: str) -> str:
    """A version's artifacts as the serving platform addresses them, with example names."""
    chosen = answers(project)
    slug = chosen["project_slug"]
    example = extension_module().model_uri_example(chosen["serving"], chosen["cloud"])
    names = {
        "<bucket>": f"{slug}-mlflow-artifacts-x1",
        "<container>": f"{slug}-mlflow-artifacts",
        "<account>": f"{slug.replace('-', '')}x1",
        "<experiment id>": "1",
        "<model id>": model_id,
    }
    for placeholder, name in names.items():
        example = example.replace(placeholder, name)
    return example


def release_values(project: Path) -> dict[str, str]:
    """release.env as `promote` and `rollout` fill it: a champion, a challenger, the shares."""
    chosen = answers(project)
    lines = extension_module().release_values(
        chosen["serving"], chosen["rollout_strategy"], chosen["project_slug"]
    )
    challenger_keys = {"CHALLENGER_URI", "SHADOW_MODEL_URI", "SHADOW_MODEL_VERSION"}
    filled = {}
    for line in lines:
        challenger = line.key in challenger_keys
        if line.check == "uri":
            filled[line.key] = model_uri(project, CHALLENGER_ID if challenger else CHAMPION_ID)
        elif line.check == "version":
            filled[line.key] = CHALLENGER_VERSION if challenger else CHAMPION_VERSION
        else:
            filled[line.key] = line.default
    return filled


def render_manifests(
    project: Path,
    workdir: Path,
    *args: str,
    values: dict[str, str] | None = None,
    release: dict[str, str] | None = None,
) -> Any:
    """deploy/render.sh of a copy of the project's deploy/ (cloud.env, release.env filled in)."""
    slug = answers(project)["project_slug"]
    deploy = workdir / "deploy"
    shutil.copytree(project / "deploy", deploy)
    if values is None:
        values = cloud_values(answers(project)["cloud"], slug)
    if values:
        (deploy / "k8s" / "cloud.env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    if release is None:
        release = release_values(project)
    if release:
        (deploy / "k8s" / "release.env").write_text(
            "".join(f"{k}={v}\n" for k, v in release.items())
        )
    images = args or (SERVICE_IMAGE.format(slug=slug), JOBS_IMAGE.format(slug=slug))
    return run(["bash", deploy / "render.sh", *images], cwd=workdir, env=kubectl_env(), check=False)


# deploy/ tree hash -> the rendered documents, for this worker's session.
_MANIFESTS: dict[str, list[dict[str, Any]]] = {}
# Hash of a rendered document -> the versions it validated against.
_VALIDATED: set[str] = set()


def manifests(project: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """The documents a release applies (tests that read them run `where(on_kubernetes)`)."""
    assert kubernetes_tier(project), "a render that does not deploy to Kubernetes"
    key = tree_digest(project / "deploy")
    if key not in _MANIFESTS:
        done = render_manifests(project, tmp_path)
        assert done.returncode == 0, done.stderr
        _MANIFESTS[key] = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    return _MANIFESTS[key]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def deployment(docs: list[dict[str, Any]], slug: str, workload: str) -> dict[str, Any]:
    return by_kind(docs, "Deployment")[f"{slug}-{workload}"]


def service_pod(docs: list[dict[str, Any]], project: Path) -> dict[str, Any]:
    """The pod spec that runs the service image: its Deployment's, or KServe's transformer."""
    slug, serving = answers(project)["project_slug"], answers(project)["serving"]
    if serving == "kserve":
        transformer: dict[str, Any] = by_kind(docs, "InferenceService")[slug]["spec"]["transformer"]
        return transformer
    pod: dict[str, Any] = deployment(docs, slug, "service")["spec"]["template"]["spec"]
    return pod


def service_container(docs: list[dict[str, Any]], project: Path) -> dict[str, Any]:
    (container,) = service_pod(docs, project)["containers"]
    return dict(container)


def expected_kinds(project: Path) -> dict[str, int]:
    """How many documents of each kind a release holds, by serving choice and rollout."""
    chosen = answers(project)
    serving, rollout = chosen["serving"], chosen["rollout_strategy"]
    # Everyone: the namespace, one account per workload, the tracking server.
    kinds = {"Namespace": 1, "ServiceAccount": 3, "ConfigMap": 1, "Deployment": 1, "Service": 1}
    # The service image's own Deployment: the BentoML service, or Seldon's enrichment step.
    front = {"ConfigMap": 1, "Deployment": 1, "Service": 1}
    front |= {"HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 1}
    if serving == "kserve":
        # The transformer reads the service's ConfigMap; KServe runs the pods.
        front = {"ConfigMap": 1, "InferenceService": 2 if rollout == "shadow" else 1}
    elif serving == "seldon":
        trial = rollout in ("canary", "shadow")
        front |= {"Model": 2 if trial else 1} | ({"Experiment": 1} if trial else {})
    return {kind: kinds.get(kind, 0) + front.get(kind, 0) for kind in kinds.keys() | front.keys()}


@where(off_kubernetes)
def test_nothing_to_deploy_off_kubernetes(project: Path) -> None:
    """Below the tier (and serving in process) there is no cluster: no deploy/ at all."""
    assert not (project / "deploy").exists()
    assert set(workflow(project)["jobs"]) == {"images"}


@where(on_kubernetes)
def test_manifests_validate_against_their_schemas(
    project: Path, tmp_path: Path, record_property: Any
) -> None:
    """Every document is checked: core kinds by kubernetes-validate, custom ones by their CRD."""
    import kubernetes_validate

    docs = manifests(project, tmp_path)
    started = time.perf_counter()
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        key = digest(yaml.safe_dump(doc, sort_keys=True).encode())
        if key in _VALIDATED:
            continue
        if crd_schemas.is_custom(doc):
            problems = crd_schemas.errors(doc)
            assert problems == [], f"{name} breaks its CRD ({doc['apiVersion']})"
        else:
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as error:
                    pytest.fail(f"{name} is not valid Kubernetes {version}: {error.message}")
                except kubernetes_validate.SchemaNotFoundError:
                    # No manifest ships that nothing checked.
                    pytest.fail(f"nothing checks {name}: no schema for {doc['apiVersion']}")
        _VALIDATED.add(key)
    record_property("validate_seconds", time.perf_counter() - started)

    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(kind for kind, n in expected_kinds(project).items() for _ in range(n))
    slug = answers(project)["project_slug"]
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == slug, doc["metadata"]["name"]
    labels = by_kind(docs, "Namespace")[slug]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


@where(on_kubernetes)
def test_pods_are_locked_down(project: Path, tmp_path: Path) -> None:
    docs = manifests(project, tmp_path)
    slug = answers(project)["project_slug"]
    users = {
        "service": image_user(project / "docker" / "service.Dockerfile"),
        "mlflow": image_user(project / "docker" / "jobs.Dockerfile"),
    }
    if answers(project)["serving"] == "kserve":
        # Knative takes the restricted profile's settings per container, not per pod.
        container = service_container(docs, project)
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == users.pop("service")
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        writable = {v["name"] for v in service_pod(docs, project)["volumes"] if "emptyDir" in v}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts.get("/tmp") in writable  # noqa: S108 (the pod's path, not ours)
    for workload, uid in users.items():
        pod = deployment(docs, slug, workload)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False
        writable = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            # /tmp is writable: Python, BentoML and MLflow put files there.
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in writable  # noqa: S108 (the pod's path, not ours)
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert set(resources[kind]) == {"cpu", "memory"}, (workload, kind)
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in container, (workload, probe)


@where(on_kubernetes, serves_with("bentoml"))
def test_service_has_room_for_its_measured_memory(project: Path, tmp_path: Path) -> None:
    # Measured for the BentoML service; the enrichment step holds no model.
    docs = manifests(project, tmp_path)
    container = service_container(docs, project)
    mebibytes = {"Mi": 1, "Gi": 1024}

    def size(value: str) -> int:
        return int(value[:-2]) * mebibytes[value[-2:]]

    # Measured: about 100 MB (BentoML's supervisor) + 380-420 MB (its worker) RSS.
    assert size(container["resources"]["requests"]["memory"]) >= 520
    assert size(container["resources"]["limits"]["memory"]) >= size(
        container["resources"]["requests"]["memory"]
    )


@where(on_kubernetes)
def test_probes_use_routes_the_generated_suite_exercises(project: Path, tmp_path: Path) -> None:
    docs = manifests(project, tmp_path)
    slug, serving = answers(project)["project_slug"], answers(project)["serving"]
    # The generated HTTP tests call these routes on the real service.
    http_tests = (project / "tests" / "test_service_http.py").read_text()
    exercised = set(re.findall(r"\.get\(\"(/[a-z]+)\"\)", http_tests))

    # The service image runs BentoML in every case (`transformer` is the same service
    # scoring over V2): its routes.
    service = service_container(docs, project)
    paths = {
        probe: service[probe]["httpGet"]["path"] for probe in ("livenessProbe", "readinessProbe")
    }
    assert paths == {"livenessProbe": "/livez", "readinessProbe": "/readyz"}
    assert set(paths.values()) <= exercised
    if serving == "kserve":
        # Knative probes the container's one port: the probes leave it to Knative.
        assert all("port" not in service[probe]["httpGet"] for probe in paths)
    else:
        ports = {p["name"]: p["containerPort"] for p in service["ports"]}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert service[probe]["httpGet"]["port"] in ports
        config = by_kind(docs, "ConfigMap")
        (service_config,) = [c for n, c in config.items() if n.startswith(f"{slug}-service-")]
        assert ports["http"] == int(service_config["data"][f"{env_prefix(project)}PORT"])

    (mlflow,) = deployment(docs, slug, "mlflow")["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        # /health is the route MLflow exempts from its Host check (probes send the pod's IP).
        assert mlflow[probe]["httpGet"]["path"] == "/health"
    assert "/health" in (project / "tests" / "stack" / "services.py").read_text()


@where(on_kubernetes)
def test_service_accounts_carry_the_cloud_identity(project: Path, tmp_path: Path) -> None:
    docs = manifests(project, tmp_path)
    slug, cloud = answers(project)["project_slug"], answers(project)["cloud"]
    accounts = by_kind(docs, "ServiceAccount")
    assert set(accounts) == {f"{slug}-{w}" for w in WORKLOADS}
    values = cloud_values(cloud, slug)
    for workload in WORKLOADS:
        account = accounts[f"{slug}-{workload}"]
        assert account["automountServiceAccountToken"] is False
        annotations = account["metadata"].get("annotations", {})
        if cloud == "local":
            assert annotations == {}
        else:
            annotation, suffix = IDENTITY[cloud]
            assert annotations == {annotation: values[f"{workload.upper()}_{suffix}"]}

    # The pods' accounts, and the labels their pods carry.
    pods = {
        "mlflow": (
            deployment(docs, slug, "mlflow")["spec"]["template"]["spec"]["serviceAccountName"],
            deployment(docs, slug, "mlflow")["spec"]["template"]["metadata"]["labels"],
        )
    }
    if answers(project)["serving"] == "kserve":
        # KServe puts a component's labels on its pods.
        for name, spec in by_kind(docs, "InferenceService").items():
            for component in ("predictor", "transformer"):
                if component in spec["spec"]:
                    part = spec["spec"][component]
                    labels = part.get("labels", {})
                    pods[f"{name} {component}"] = (part["serviceAccountName"], labels)
    else:
        template = deployment(docs, slug, "service")["spec"]["template"]
        pods["service"] = (template["spec"]["serviceAccountName"], template["metadata"]["labels"])
    for name, (account, labels) in pods.items():
        expected_account = f"{slug}-tracking" if name == "mlflow" else f"{slug}-service"
        assert account == expected_account, name
        has_label = USES_AZURE_IDENTITY.items() <= labels.items()
        assert has_label == (cloud == "azure"), name


@where(on_kubernetes)
def test_settings_exist_and_secrets_are_only_referenced(project: Path, tmp_path: Path) -> None:
    docs = manifests(project, tmp_path)
    slug, cloud = answers(project)["project_slug"], answers(project)["cloud"]
    prefix, fields = env_prefix(project), settings_fields(project)
    assert "Secret" not in {d["kind"] for d in docs}

    service = service_container(docs, project)
    config = by_kind(docs, "ConfigMap")
    (service_config,) = [c for n, c in config.items() if n.startswith(f"{slug}-service-")]
    (mlflow_config,) = [c for n, c in config.items() if n.startswith(f"{slug}-mlflow-")]
    assert service["envFrom"] == [{"configMapRef": {"name": service_config["metadata"]["name"]}}]
    secret_keys = {
        e["name"]: e["valueFrom"]["secretKeyRef"] for e in service["env"] if "valueFrom" in e
    }
    for name, ref in secret_keys.items():
        assert ref == {"name": f"{slug}-service", "key": name}
    # Every setting the service gets is a field of Settings.
    names = set(service_config["data"]) | set(secret_keys)
    prefixed = {n for n in names if n.startswith(prefix)}
    assert {n.removeprefix(prefix).lower() for n in prefixed} <= fields
    assert f"{prefix}INFERENCE_LOG_URL" in secret_keys
    feature_store = answers(project)["feature_store"]
    assert (f"{prefix}FEATURE_REGISTRY_URL" in secret_keys) == feature_store
    if feature_store and cloud == "aws":
        assert service_config["data"][f"{prefix}ONLINE_STORE_URL"] == "dynamodb://eu-west-1"
    else:
        assert (f"{prefix}ONLINE_STORE_URL" in secret_keys) == feature_store

    # The service reaches MLflow at a name the server accepts.
    tracking = urlsplit(service_config["data"][f"{prefix}TRACKING_URI"])
    mlflow_service = by_kind(docs, "Service")[tracking.hostname or ""]
    assert tracking.port == mlflow_service["spec"]["ports"][0]["port"]
    (mlflow,) = deployment(docs, slug, "mlflow")["spec"]["template"]["spec"]["containers"]
    (allowed,) = [a for a in mlflow["args"] if a.startswith("--allowed-hosts=")]
    assert tracking.netloc in allowed.removeprefix("--allowed-hosts=").split(",")
    assert {"--serve-artifacts", "--expose-prometheus=/tmp/mlflow-metrics"} <= set(mlflow["args"])
    # The database URL stays out of the command line.
    assert not any("postgresql" in a or "backend-store" in a for a in mlflow["args"])
    mlflow_secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in mlflow["env"]}
    expected = {"MLFLOW_BACKEND_STORE_URI"}
    if cloud == "local":
        expected |= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert mlflow_secrets == {n: {"name": f"{slug}-mlflow", "key": n} for n in expected}
    destination = mlflow_config["data"]["MLFLOW_ARTIFACTS_DESTINATION"]
    scheme = extension_module().CLOUDS[cloud].artifact_scheme
    assert destination.startswith(f"{scheme}://")
    if cloud != "local":
        assert destination == cloud_values(cloud, slug)["MLFLOW_ARTIFACTS_DESTINATION"]


@where(on_kubernetes)
def test_images_are_pinned_to_the_release(project: Path, tmp_path: Path) -> None:
    docs = manifests(project, tmp_path)
    slug = answers(project)["project_slug"]
    (mlflow,) = deployment(docs, slug, "mlflow")["spec"]["template"]["spec"]["containers"]
    images = {"service": service_container(docs, project)["image"], "mlflow": mlflow["image"]}
    assert images == {
        "service": SERVICE_IMAGE.format(slug=slug),
        "mlflow": JOBS_IMAGE.format(slug=slug),
    }
    if answers(project)["cloud"] == "local":
        # Without a release: the images the compose stack builds, for kind or k3d.
        built = run([tool("kubectl"), "kustomize", project / "deploy" / "k8s"], cwd=tmp_path).stdout
        local = re.findall(r"^\s+image: (\S+)$", built, re.MULTILINE)
        assert sorted(local) == [f"{slug}-jobs:local", f"{slug}-service:local"]


@where(on_kubernetes, serves_with("bentoml", "seldon"))
def test_autoscaler_budget_and_service_select_the_service_pods(
    project: Path, tmp_path: Path
) -> None:
    # KServe scales its own pods (the InferenceService's minReplicas, maxReplicas).
    docs = manifests(project, tmp_path)
    slug = answers(project)["project_slug"]
    service_deployment = deployment(docs, slug, "service")
    pod_labels = service_deployment["spec"]["template"]["metadata"]["labels"]
    # The autoscaler owns the replica count.
    assert "replicas" not in service_deployment["spec"]

    autoscaler = by_kind(docs, "HorizontalPodAutoscaler")[f"{slug}-service"]
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    assert autoscaler["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"{slug}-service",
    }
    assert 2 <= autoscaler["spec"]["minReplicas"] < autoscaler["spec"]["maxReplicas"]
    budget = by_kind(docs, "PodDisruptionBudget")[f"{slug}-service"]
    assert budget["spec"]["minAvailable"] < autoscaler["spec"]["minReplicas"]
    for selector in (
        budget["spec"]["selector"]["matchLabels"],
        by_kind(docs, "Service")[f"{slug}-service"]["spec"]["selector"],
        service_deployment["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= pod_labels.items()
        # ... and not the tracking server's.
        tracking_labels = deployment(docs, slug, "mlflow")["spec"]["template"]["metadata"]
        assert not selector.items() <= tracking_labels["labels"].items()


# deploy/ tree hashes whose render script passed the test below, for this worker's session.
_REFUSALS_CHECKED: set[str] = set()


@where(on_kubernetes)
def test_render_script_refuses_what_would_deploy_wrong(project: Path, tmp_path: Path) -> None:
    key = tree_digest(project / "deploy")
    if key in _REFUSALS_CHECKED:
        return
    slug, cloud = answers(project)["project_slug"], answers(project)["cloud"]
    run([tool("shellcheck"), project / "deploy" / "render.sh"], cwd=project)

    floating = render_manifests(project, tmp_path / "latest", "svc:latest", "jobs")
    assert floating.returncode == 2
    assert "pin the image" in floating.stderr

    without_namespace = render_manifests(
        project,
        tmp_path / "scoped",
        "--without-namespace",
        SERVICE_IMAGE.format(slug=slug),
        JOBS_IMAGE.format(slug=slug),
    )
    assert without_namespace.returncode == 0, without_namespace.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(without_namespace.stdout) if d}
    assert "Namespace" not in kinds
    assert "Deployment" in kinds

    if cloud != "local":
        # As committed, cloud.env is empty: nothing deploys without the cloud's identities.
        empty = render_manifests(project, tmp_path / "empty", values={})
        assert empty.returncode == 1
        assert set(cloud_values(cloud, slug)) <= set(empty.stderr.split())
    _REFUSALS_CHECKED.add(key)
