"""The Terraform under infra/ is static-checked for every cloud combination.

Each cloud has its own template directory (``{% if cloud == 'aws' %}infra{% endif %}``
and so on) that renders to ``infra/``; ``cloud=local`` renders none. For every
combination with a cloud:

- every ``.tf`` file parses (python-hcl2), and the tree has the shape the other
  parts rely on: the outputs the deploy workflow and the Kubernetes manifests
  read, the names of the namespace and its ServiceAccounts, CI trust limited to
  the main branch of one repository, a cluster exactly for the tiers that
  deploy to Kubernetes, an online store exactly with the feature store, typed
  and described variables, no default that looks like a secret, pinned
  versions, and an example tfvars file with placeholders only;
- checkov reports no failed check, and every accepted finding is suppressed in
  the code with ``# checkov:skip=<check>:<reason>``, a reason given.

Terraform itself does not run here: ``terraform validate`` needs the providers,
which ``terraform init`` downloads from the Terraform registry.

Checkov runs in its own tool environment (``uv tool run``), so that its many
pins never meet the test environment's. The 18 cloud combinations render 12
distinct trees (growth and enterprise share one). Reports are cached on disk
by a hash of the tree's files and shared by the session's xdist workers under
a file lock, so each distinct tree is scanned once per session; and since
checkov's start-up costs more than a scan, a worker that needs a report scans
every tree it has rendered so far in the same run (all 12 take about as long
as one).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hcl2
import pytest
from filelock import FileLock

from helpers import (
    clean_env,
    combinations,
    on_kubernetes,
    read_answers,
    run,
    tool,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from helpers import Combination

CHECKOV = "checkov==3.3.30"
CLOUDS = ("aws", "gcp", "azure")

# Terraform outputs the deploy workflow reads, as GitHub repository variables of
# the same name in upper case.
CI_OUTPUTS = {
    "aws": {"aws_region", "aws_ci_role_arn", "ecr_repository_url"},
    "gcp": {"gcp_workload_identity_provider", "gcp_ci_service_account", "gcp_registry_url"},
    "azure": {"azure_client_id", "azure_tenant_id", "azure_subscription_id", "acr_login_server"},
}
# The identity each Kubernetes ServiceAccount is annotated with.
WORKLOAD_OUTPUTS = {
    "aws": {"service_role_arn", "tracking_role_arn", "jobs_role_arn"},
    "gcp": {"service_gsa_email", "tracking_gsa_email", "jobs_gsa_email"},
    "azure": {
        "service_identity_client_id",
        "tracking_identity_client_id",
        "jobs_identity_client_id",
    },
}
# IRSA roles trust the cluster's OIDC provider, so on AWS they exist with a
# cluster only; Google service accounts and Azure identities exist either way
# (a host outside Kubernetes can run as one).
WORKLOAD_IDENTITY_NEEDS_CLUSTER = {"aws"}
CLUSTER = {
    "aws": "aws_eks_cluster",
    "gcp": "google_container_cluster",
    "azure": "azurerm_kubernetes_cluster",
}
# What exists only with the feature store. AWS: DynamoDB tables are created by
# `feast apply`, so Terraform holds only the policies scoped to them.
ONLINE_STORE = {
    "aws": {"aws_iam_policy.online_store_read", "aws_iam_policy.online_store_write"},
    "gcp": {"google_redis_instance.online_store"},
    "azure": {"azurerm_redis_cache.online_store", "azurerm_private_endpoint.online_store"},
}
ONLINE_STORE_TYPES = {"google_redis_instance", "azurerm_redis_cache", "aws_dynamodb_table"}
# How each cloud names the Kubernetes ServiceAccount a workload identity trusts.
WORKLOAD_SUBJECT = {
    "aws": "system:serviceaccount:${local.namespace}:${each.value}",
    "gcp": "serviceAccount:${var.project_id}.svc.id.goog[${local.namespace}/${each.value}]",
    "azure": "system:serviceaccount:${local.namespace}:${each.value}",
}
CI_SUBJECT = "repo:${var.github_repository}:ref:refs/heads/main"

SECRET_NAME = re.compile(
    r"(?i)password|passwd|secret|token|api_?key|access_?key|private_?key|credential"
)
KEY_LIKE = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9+/=_-]{24,}$")
# Attributes that hold a credential; no output may expose one.
SECRET_ATTRIBUTE = re.compile(
    r"\.(password|auth_string|secret_string|primary_access_key|secondary_access_key"
    r"|primary_connection_string|secondary_connection_string|private_key)\b"
)
SKIP_COMMENT = re.compile(r"#\s*checkov:skip=(?P<check>[^:\s]*)(?::(?P<reason>.*))?")
BLOCK_START = re.compile(r'^(?P<kind>resource|data) "(?P<type>[\w-]+)" "(?P<name>[\w-]+)" \{')

CLOUD_COMBINATIONS = [c for c in combinations() if c["cloud"] != "local"]


# ---------------------------------------------------------------------------
# Rendered trees, parsed
# ---------------------------------------------------------------------------


@pytest.fixture(params=CLOUD_COMBINATIONS, ids=[c.id for c in CLOUD_COMBINATIONS])
def cloud_combination(request: pytest.FixtureRequest) -> Combination:
    combination: Combination = request.param
    return combination


@pytest.fixture
def infra(cloud_combination: Combination, rendered: Callable[[Combination], Path]) -> Path:
    """infra/ of the project rendered for a cloud combination (renders shared with the run)."""
    return rendered(cloud_combination) / "infra"


def unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def plain(value: Any) -> Any:
    """python-hcl2's output without its quotes around labels and strings, or its markers
    (``__is_block__``, ``__comments__``)."""
    if isinstance(value, dict):
        return {
            unquote(k): plain(v)
            for k, v in value.items()
            if not (k.startswith("__") and k.endswith("__"))
        }
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, str):
        return unquote(value)
    return value


@functools.cache
def parse(text: str) -> dict[str, Any]:
    """One HCL file, parsed once per process (identical files recur across combinations)."""
    parsed: dict[str, Any] = plain(hcl2.loads(text))
    return parsed


class Tree:
    """Every .tf file of an infra/ directory, parsed and merged by block type."""

    def __init__(self, infra: Path) -> None:
        self.blocks: dict[str, list[Any]] = defaultdict(list)
        for path in sorted(infra.glob("*.tf")):
            for kind, blocks in parse(path.read_text(encoding="utf-8")).items():
                self.blocks[kind].extend(blocks)

    def labelled(self, kind: str) -> dict[str, Any]:
        """Blocks with one label (variable, output): name -> body."""
        return {name: body for block in self.blocks[kind] for name, body in block.items()}

    def addresses(self, kind: str = "resource") -> dict[str, Any]:
        """Blocks with two labels (resource, data): "type.name" -> body."""
        return {
            f"{type_}.{name}": body
            for block in self.blocks[kind]
            for type_, named in block.items()
            for name, body in named.items()
        }

    def locals(self) -> dict[str, Any]:
        return {k: v for block in self.blocks["locals"] for k, v in block.items()}

    def strings(self) -> list[str]:
        """Every string value anywhere in the tree."""
        found: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, dict):
                for item in value.values():
                    walk(item)
            elif isinstance(value, list):
                for item in value:
                    walk(item)
            elif isinstance(value, str):
                found.append(value)

        walk(dict(self.blocks))
        return found


# ---------------------------------------------------------------------------
# Which tree renders
# ---------------------------------------------------------------------------


def test_infra_renders_only_for_a_cloud(project: Path, combination: Combination) -> None:
    terraform_files = sorted(p.relative_to(project) for p in project.rglob("*.tf"))
    if combination["cloud"] == "local":
        assert (not (project / "infra").exists(), terraform_files) == (True, [])
        return
    infra = project / "infra"
    expected = {
        "README.md",
        "terraform.tfvars.example",
        ".gitignore",
        "versions.tf",
        "main.tf",
        "variables.tf",
        "storage.tf",
        "database.tf",
        "registry.tf",
        "identity.tf",
        "outputs.tf",
    }
    assert expected <= {p.name for p in infra.iterdir()}
    assert (infra / "online_store.tf").exists() == combination["feature_store"]
    assert (infra / "kubernetes.tf").exists() == on_kubernetes(combination)
    assert {p.parent.name for p in project.rglob("*.tf")} == {"infra"}


# ---------------------------------------------------------------------------
# Structure
# ---------------------------------------------------------------------------


def test_outputs_are_the_ones_the_workflow_and_manifests_read(
    infra: Path, cloud_combination: Combination
) -> None:
    cloud = cloud_combination["cloud"]
    outputs = Tree(infra).labelled("output")
    with_workloads = (
        on_kubernetes(cloud_combination) or cloud not in WORKLOAD_IDENTITY_NEEDS_CLUSTER
    )

    assert CI_OUTPUTS[cloud] <= set(outputs)
    assert WORKLOAD_OUTPUTS[cloud] & set(outputs) == (
        WORKLOAD_OUTPUTS[cloud] if with_workloads else set()
    )
    assert [name for name, body in outputs.items() if not body.get("description")] == []
    exposed = [n for n, b in outputs.items() if SECRET_ATTRIBUTE.search(str(b["value"]))]
    assert exposed == []
    assert outputs["mlflow_artifacts_destination"]["value"].startswith(
        {"aws": "s3://", "gcp": "gs://", "azure": "wasbs://"}[cloud]
    )


def test_names_match_the_kubernetes_manifests(infra: Path, cloud_combination: Combination) -> None:
    tree = Tree(infra)
    slug = read_answers(infra.parent)["project_slug"]
    values = tree.locals()

    assert values["namespace"] == slug
    assert values["service_accounts"] == {
        "service": f"{slug}-service",
        "tracking": f"{slug}-tracking",
        "jobs": f"{slug}-jobs",
    }
    assert f"{slug}-mlflow-artifacts" in (infra.joinpath("storage.tf").read_text(encoding="utf-8"))
    subject = WORKLOAD_SUBJECT[cloud_combination["cloud"]]
    assert (subject in tree.strings()) == on_kubernetes(cloud_combination)


def test_ci_trusts_the_main_branch_of_one_repository(infra: Path) -> None:
    strings = Tree(infra).strings()

    assert [s for s in strings if CI_SUBJECT in s], "no trust condition names the main branch"
    assert [s for s in strings if s.startswith("repo:") and "*" in s] == []


def test_cluster_exists_exactly_for_kubernetes_tiers(
    infra: Path, cloud_combination: Combination
) -> None:
    resources = Tree(infra).addresses()
    clusters = [a for a in resources if a.split(".")[0] in CLUSTER.values()]

    expected = [f"{CLUSTER[cloud_combination['cloud']]}.main"]
    assert clusters == (expected if on_kubernetes(cloud_combination) else [])


def test_online_store_exists_exactly_with_the_feature_store(
    infra: Path, cloud_combination: Combination
) -> None:
    resources = set(Tree(infra).addresses())
    related = {a for a in resources if "online_store" in a or a.split(".")[0] in ONLINE_STORE_TYPES}

    expected = ONLINE_STORE[cloud_combination["cloud"]]
    assert related == (expected if cloud_combination["feature_store"] else set())


def test_variables_are_typed_described_and_default_no_secret(infra: Path) -> None:
    variables = Tree(infra).labelled("variable")
    undocumented = [n for n, b in variables.items() if not (b.get("type") and b.get("description"))]
    secret_defaults = [
        name
        for name, body in variables.items()
        if (default := body.get("default")) not in (None, "", [], {})
        and (SECRET_NAME.search(name) or KEY_LIKE.match(str(default)))
    ]

    assert variables
    assert (undocumented, secret_defaults) == ([], [])


def test_versions_are_pinned(infra: Path) -> None:
    (settings,) = Tree(infra).blocks["terraform"]
    providers = {
        name: spec["version"]
        for block in settings["required_providers"]
        for name, spec in block.items()
    }

    assert settings["required_version"] == ">= 1.6"
    assert providers
    assert {n: v for n, v in providers.items() if not re.search(r">=.*<|~>", v)} == {}


def test_tfvars_example_holds_placeholders_for_declared_variables(infra: Path) -> None:
    variables = Tree(infra).labelled("variable")
    example = parse((infra / "terraform.tfvars.example").read_text(encoding="utf-8"))
    required = {name for name, body in variables.items() if "default" not in body}

    def placeholder(value: Any) -> bool:
        values = value if isinstance(value, list) else [value]
        return all(isinstance(v, str) and re.fullmatch(r".*<[^<>]+>.*", v) for v in values)

    assert set(example) <= set(variables), "sets a variable that is not declared"
    assert required <= set(example), "leaves out a required variable"
    assert {k: v for k, v in example.items() if not placeholder(v)} == {}


# ---------------------------------------------------------------------------
# checkov
# ---------------------------------------------------------------------------


def skip_comments(infra: Path) -> list[tuple[str, str, str]]:
    """(check, reason, resource address) of every ``# checkov:skip=`` comment."""
    found = []
    for path in sorted(infra.glob("*.tf")):
        address = ""
        for line in path.read_text(encoding="utf-8").splitlines():
            if start := BLOCK_START.match(line):
                prefix = "data." if start["kind"] == "data" else ""
                address = f"{prefix}{start['type']}.{start['name']}"
            if skip := SKIP_COMMENT.search(line):
                found.append((skip["check"], (skip["reason"] or "").strip(), address))
    return found


def tree_key(infra: Path) -> str:
    digest = hashlib.sha256(CHECKOV.encode())
    for path in sorted(infra.glob("*.tf")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def scan(trees: dict[str, Path], cache: Path) -> float:
    """Scan several infra/ trees with one checkov run; cache one report per tree.

    checkov's start-up costs more than scanning a tree, so the trees are copied
    side by side into one directory (named by their keys) and scanned together;
    each result is attributed to its tree by the first part of its file path.
    """
    batch = cache / f"batch-{os.getpid()}-{time.monotonic_ns()}"
    for key, infra in trees.items():
        (batch / key).mkdir(parents=True)
        for path in infra.glob("*.tf"):
            shutil.copy2(path, batch / key / path.name)
    started = time.perf_counter()
    command = [tool("uv"), "tool", "run", "--compile-bytecode", "--from", CHECKOV, "checkov"]
    done = run(
        # --skip-download: no calls to the vendor's platform (docs links, severities).
        [*command, "-d", ".", "--framework", "terraform", "-o", "json", "--skip-download"],
        cwd=batch,
        env=clean_env(UV_NO_PROGRESS="1"),
        timeout=600,
        check=False,  # exit code 1 means failed checks: the reports say which
    )
    seconds = time.perf_counter() - started
    try:
        results = json.loads(done.stdout)["results"]
    except (json.JSONDecodeError, KeyError, TypeError):
        pytest.fail(f"checkov printed no JSON report (exit {done.returncode}):\n{done.stderr}")
    reports: dict[str, dict[str, list[Any]]] = {
        key: {"passed": [], "failed": [], "skipped": [], "parsing_errors": []} for key in trees
    }
    for outcome in ("passed", "failed", "skipped"):
        for check in results[f"{outcome}_checks"]:
            key = check["file_path"].strip("/").split("/")[0]
            reports[key][outcome].append(
                {
                    "check_id": check["check_id"],
                    "check_name": check["check_name"],
                    "resource": check["resource"],
                    "file": check["file_path"].split("/")[-1],
                    "suppress_comment": check["check_result"].get("suppress_comment", ""),
                }
            )
    for error in results["parsing_errors"]:
        key = next(part for part in Path(error).parts if part in reports)
        reports[key]["parsing_errors"].append(error)
    for key, report in reports.items():
        (cache / f"{key}.json").write_text(json.dumps(report), encoding="utf-8")
    shutil.rmtree(batch)
    return seconds


class CheckovReports:
    """checkov's report per tree, cached on disk and shared by the session's xdist workers."""

    def __init__(self, cache: Path, renders: Path) -> None:
        self.cache = cache
        # The run's shared renders (conftest's ``rendered``): complete once they are there.
        self.renders = renders

    def report(self, infra: Path) -> tuple[dict[str, Any], dict[str, float]]:
        """The report of one tree, and what scanning it cost if this call scanned."""
        report_path = self.path(tree_key(infra))
        cost: dict[str, float] = {}
        with FileLock(self.cache / "scan.lock"):
            if not report_path.exists():
                # Every tree rendered so far and not scanned yet, in one run.
                rendered = [p / "infra" for p in self.renders.iterdir() if (p / "infra").is_dir()]
                trees = {tree_key(tree): tree for tree in [infra, *rendered]}
                pending = {k: v for k, v in trees.items() if not self.path(k).exists()}
                cost = {"checkov_seconds": scan(pending, self.cache), "checkov_trees": len(pending)}
            report: dict[str, Any] = json.loads(report_path.read_text(encoding="utf-8"))
        return report, cost

    def path(self, key: str) -> Path:
        return self.cache / f"{key}.json"


@pytest.fixture(scope="session")
def checkov_reports(render_cache: Path) -> CheckovReports:
    # Beside the run's shared renders, which every xdist worker sees.
    cache = render_cache.parent / "checkov-reports"
    cache.mkdir(exist_ok=True)
    return CheckovReports(cache, render_cache)


def test_checkov_passes_with_every_skip_explained(
    infra: Path,
    checkov_reports: CheckovReports,
    record_property: Callable[[str, object], None],
) -> None:
    report, cost = checkov_reports.report(infra)
    for name, value in cost.items():
        record_property(name, value)
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file']}): {c['check_name']}"
        for c in report["failed"]
    ]
    skipped = {(c["check_id"], c["resource"]) for c in report["skipped"]}
    comments = skip_comments(infra)

    assert (failed, report["parsing_errors"]) == ([], [])
    assert report["passed"], "checkov ran no check on this tree"
    assert [c for c in report["skipped"] if not c["suppress_comment"].strip()] == []
    assert [(check, address) for check, reason, address in comments if not reason] == []
    # Each comment suppresses a check that applies to its block: no typo, no stray skip.
    assert {(check, address) for check, _, address in comments} == skipped
