"""Every decision that maps copier answers to components lives here.

Two Jinja extensions are loaded from this module (see ``_jinja_extensions`` in
copier.yml):

* ``MlopsFilters`` adds the filters used by question defaults and validators
  (questions are rendered before any file, so they cannot use the context hook).
* ``MlopsContext`` adds the derived values every file template reads, so that
  templates ask ``tier.gate_min_auc`` instead of repeating ``{% if %}`` chains.
"""

from __future__ import annotations

import functools
import keyword
import os
import re
import sys
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from copier_template_extensions import ContextHook
from jinja2 import Environment, pass_context
from jinja2.ext import Extension
from jinja2.runtime import Context


@dataclass(frozen=True)
class Tier:
    """Defaults for one team-size tier (see the decision framework in the docs)."""

    key: str
    label: str
    feature_store: bool
    # Quality gate: an absolute floor and the allowed regression vs the champion.
    gate_min_auc: float
    gate_min_f1: float
    gate_max_regression: float
    # Share of drifting features above which the dataset counts as drifted.
    drift_share: float
    rationale: str
    # Text of the generated decision records (docs/decisions/): why the tier
    # defaults to a feature store or not, and why its gate and drift
    # thresholds sit where they do.
    feature_store_reason: str
    thresholds_reason: str
    # Monitoring set of the compose stack: every tier gets Prometheus, the
    # Pushgateway and alert rules; dashboards add Grafana, alert routing adds
    # Alertmanager (paging someone needs an on-call rota to page).
    dashboards: bool
    alert_routing: bool
    # When the scheduled training deployment runs (cron, UTC).
    training_cron: str
    # Whether the service deploys to Kubernetes (manifests under deploy/k8s/ and a
    # cluster in infra/): one container is enough until several teams share it.
    # A serving choice that runs only on Kubernetes overrides it (deploys_to_kubernetes).
    kubernetes: bool
    # What serves the champion by default (a key of SERVINGS), and why.
    serving: str
    serving_reason: str
    # How a version that passed the gate reaches traffic (a key of ROLLOUTS), and why.
    rollout_strategy: str
    rollout_reason: str


TIERS: dict[str, Tier] = {
    "solo": Tier(
        key="solo",
        label="solo / startup (1-10 people, a few models)",
        feature_store=False,
        gate_min_auc=0.75,
        gate_min_f1=0.50,
        gate_max_regression=0.01,
        drift_share=0.5,
        rationale=(
            "A few models and one team: features are computed in code from parquet "
            "tables, one MLflow server holds runs and models, and drift reports run "
            "as a batch job. Add a feature store at around ten models."
        ),
        feature_store_reason=(
            "With a few models owned by one team, a feature store is more platform than "
            "the team can run: a registry, an online store and materialization jobs to "
            "operate before the first model pays for them. Features computed in code "
            "over parquet, with the same point-in-time join, give correct training sets "
            "at no operating cost."
        ),
        thresholds_reason=(
            "A young model on little data moves between retrains: the gate tolerates a "
            "small loss against the champion and drift needs many features to move, so "
            "a small team reacts to real shifts, not to noise."
        ),
        dashboards=False,
        alert_routing=False,
        training_cron="0 3 * * 1",
        kubernetes=False,
        serving="bentoml",
        serving_reason=(
            "A few models and one team: the project's own Python service serves the "
            "pipeline as trained, in one container that runs embedded, in compose or "
            "on any host, with no cluster or operator to run first."
        ),
        rollout_strategy="blue-green",
        rollout_reason=(
            "One container and a few models: the champion alias moves at once and "
            "`rollback` moves it back. A split of traffic needs enough requests per "
            "hour to judge a share of them, which a young product rarely has."
        ),
    ),
    "growth": Tier(
        key="growth",
        label="growth (10-50 people, tens of models)",
        feature_store=True,
        gate_min_auc=0.80,
        gate_min_f1=0.55,
        gate_max_regression=0.005,
        drift_share=0.4,
        rationale=(
            "Tens of models and several teams: a Feast feature store keeps training "
            "and serving on one set of feature definitions, and the quality gate "
            "refuses any regression against the champion beyond half a point of AUC."
        ),
        feature_store_reason=(
            "With tens of models and several teams, the same features get reimplemented "
            "per model and drift apart between training and serving. One set of Feast "
            "definitions feeds point-in-time training sets and online lookups, and is "
            "worth the registry and the materialization job it costs."
        ),
        thresholds_reason=(
            "Several models share consumers: a new version may lose only a little "
            "against the champion, and drift is declared earlier than for a small team."
        ),
        dashboards=True,
        alert_routing=False,
        training_cron="0 3 * * *",
        kubernetes=True,
        serving="bentoml",
        serving_reason=(
            "Tens of models on a shared cluster: the same Python service runs as a "
            "Deployment behind an autoscaler, and the team that writes it runs it. An "
            "inference platform pays off once a platform team operates it for many models."
        ),
        rollout_strategy="canary",
        rollout_reason=(
            "Tens of models with real traffic: a new version serves 5 % of customers "
            "first and grows through 10, 25 and 50 % only while its decisions agree "
            "with the champion's, so a bad version reaches few customers."
        ),
    ),
    "enterprise": Tier(
        key="enterprise",
        label="enterprise / platform (50+ people, hundreds of models)",
        feature_store=True,
        gate_min_auc=0.85,
        gate_min_f1=0.58,
        gate_max_regression=0.0,
        drift_share=0.3,
        rationale=(
            "Hundreds of models under a platform team: shared feature definitions "
            "with ownership, a gate that accepts no regression at all, and a drift "
            "threshold that flags retraining early."
        ),
        feature_store_reason=(
            "With hundreds of models under a platform team, features are a shared "
            "product: Feast definitions with an owner, reused across models, and the "
            "same definitions for training and online serving are the baseline, not "
            "an option."
        ),
        thresholds_reason=(
            "One bad promotion reaches many consumers: the gate accepts no regression "
            "against the champion, and drift is declared earliest, so retraining is "
            "flagged before consumers notice."
        ),
        dashboards=True,
        alert_routing=True,
        training_cron="0 */6 * * *",
        kubernetes=True,
        serving="kserve",
        serving_reason=(
            "Hundreds of models under a platform team: every model becomes the same "
            "Kubernetes resource (a KServe InferenceService) on the Open Inference (V2) "
            "protocol, with revisions, canary traffic and autoscaling run by the "
            "platform's operator instead of per-model service code."
        ),
        rollout_strategy="shadow",
        rollout_reason=(
            "One bad version reaches many consumers: a new version first scores a copy "
            "of every request with its answers logged, never returned, and goes on to "
            "a canary (`rollout canary`) once the comparison holds."
        ),
    ),
}


@dataclass(frozen=True)
class Cloud:
    """Where the stack runs: the managed service behind each component.

    The compose stack and the tests run a stand-in for each managed service
    (``emulator``), so every cloud renders a project that also runs locally.
    """

    key: str
    label: str
    # MLflow's artifacts destination: s3:// (S3 or MinIO), gs:// or wasbs://.
    artifact_scheme: str
    object_store: str
    tracking_db: str
    # Feast online store type ("redis" or "dynamodb") and the managed service.
    online_store: str
    online_store_service: str
    kubernetes_service: str
    registry: str
    workload_identity: str
    # The managed ML platform a team would otherwise use (named in the docs).
    platform: str
    # What stands in for the object store locally and in the tests.
    emulator: str
    # Client library the MLflow server needs for the artifacts destination.
    storage_requirements: tuple[str, ...]
    # Feast's offline data on the object store: the URL scheme and the fsspec
    # filesystem that reads and writes it.
    feature_data_scheme: str
    feature_data_requirement: str


CLOUDS: dict[str, Cloud] = {
    "local": Cloud(
        key="local",
        label="local / on-prem (containers, no cloud account)",
        artifact_scheme="s3",
        object_store="MinIO",
        tracking_db="Postgres container",
        online_store="redis",
        online_store_service="Redis container",
        kubernetes_service="any cluster (kind, k3d)",
        registry="any OCI registry",
        workload_identity="none (Kubernetes secrets)",
        platform="none",
        emulator="MinIO (compose), moto's S3 server (tests)",
        storage_requirements=("boto3>=1.34",),
        feature_data_scheme="s3",
        feature_data_requirement="s3fs>=2024.6",
    ),
    "aws": Cloud(
        key="aws",
        label="AWS (S3, RDS, DynamoDB, EKS, ECR)",
        artifact_scheme="s3",
        object_store="Amazon S3",
        tracking_db="Amazon RDS for PostgreSQL",
        online_store="dynamodb",
        online_store_service="Amazon DynamoDB",
        kubernetes_service="Amazon EKS",
        registry="Amazon ECR",
        workload_identity="IAM Roles for Service Accounts (IRSA)",
        platform="SageMaker",
        emulator="moto's server (S3 and DynamoDB)",
        storage_requirements=("boto3>=1.34",),
        feature_data_scheme="s3",
        feature_data_requirement="s3fs>=2024.6",
    ),
    "gcp": Cloud(
        key="gcp",
        label="Google Cloud (GCS, Cloud SQL, Memorystore, GKE, Artifact Registry)",
        artifact_scheme="gs",
        object_store="Google Cloud Storage",
        tracking_db="Cloud SQL for PostgreSQL",
        online_store="redis",
        online_store_service="Memorystore for Redis",
        kubernetes_service="Google Kubernetes Engine (GKE)",
        registry="Artifact Registry",
        workload_identity="GKE Workload Identity",
        platform="Vertex AI",
        emulator="gcp-storage-emulator",
        storage_requirements=("google-cloud-storage>=2.16",),
        feature_data_scheme="gs",
        feature_data_requirement="gcsfs>=2024.6",
    ),
    "azure": Cloud(
        key="azure",
        label="Azure (Blob Storage, PostgreSQL flexible server, Cache for Redis, AKS, ACR)",
        artifact_scheme="wasbs",
        object_store="Azure Blob Storage",
        tracking_db="Azure Database for PostgreSQL flexible server",
        online_store="redis",
        online_store_service="Azure Cache for Redis",
        kubernetes_service="Azure Kubernetes Service (AKS)",
        registry="Azure Container Registry (ACR)",
        workload_identity="Microsoft Entra Workload ID",
        platform="Azure Machine Learning",
        emulator="Azurite",
        storage_requirements=("azure-storage-blob>=12.19", "azure-identity>=1.15"),
        feature_data_scheme="az",
        feature_data_requirement="adlfs>=2024.7",
    ),
}


@dataclass(frozen=True)
class Serving:
    """What serves the champion: the project's own service, or an inference platform."""

    key: str
    label: str
    # Runs only on Kubernetes (its resources are an operator's custom resources):
    # deploy/ and a cluster in infra/ render for it on every tier.
    kubernetes_only: bool
    # The operator and the kinds of its custom resources that deploy/k8s/ holds
    # (each validated against the operator's published CRD by the template's tests).
    operator: str
    api_version: str
    kinds: tuple[str, ...]
    # The serving software's licence, as the generated docs state it.
    licence: str
    # The generated decision record 0004's title, and the README's one-line summary.
    record_title: str
    summary: str


SERVINGS: dict[str, Serving] = {
    "bentoml": Serving(
        key="bentoml",
        label="BentoML (the project's Python service, runs anywhere)",
        kubernetes_only=False,
        operator="",
        api_version="",
        kinds=(),
        licence="Apache License 2.0",
        record_title="Serving one champion with BentoML, swapped by alias",
        summary="Python-first, one process, Prometheus metrics built in.",
    ),
    "kserve": Serving(
        key="kserve",
        label="KServe (InferenceService on Kubernetes, Open Inference V2 protocol)",
        kubernetes_only=True,
        operator="KServe",
        api_version="serving.kserve.io/v1beta1",
        kinds=("InferenceService",),
        licence="Apache License 2.0",
        record_title="Serving the champion on KServe, behind the project's enrichment step",
        summary=(
            "Kubernetes-native: an InferenceService (MLflow runtime, V2 protocol) behind the "
            "project's enrichment step; revisions and canary splits run by KServe."
        ),
    ),
    "seldon": Serving(
        key="seldon",
        label="Seldon Core v2 (Model and Experiment on Kubernetes; BSL 1.1)",
        kubernetes_only=True,
        operator="Seldon Core v2",
        api_version="mlops.seldon.io/v1alpha1",
        kinds=("Model", "Experiment"),
        licence=(
            "Business Source License 1.1 (since 22 January 2024, Core 2.7 onwards): free "
            "for non-production use; production use needs a commercial licence from Seldon"
        ),
        record_title="Serving the champion on Seldon Core v2, behind the project's enrichment step",
        summary=(
            "Seldon Core v2 Models and Experiments behind the project's enrichment step; "
            "Business Source License 1.1, production use needs a licence from Seldon."
        ),
    ),
}


def deploys_to_kubernetes(team_size: str, serving: str) -> bool:
    """Whether the service deploys to Kubernetes: manifests in deploy/, a cluster in infra/.

    The tier decides (growth and enterprise), unless the serving choice runs only
    on Kubernetes (kserve, seldon): then every tier gets the manifests.
    """
    choice = SERVINGS.get(serving)
    return TIERS[team_size].kubernetes or (choice is not None and choice.kubernetes_only)


def model_uri_example(serving: str, cloud: str) -> str:
    """How the serving platform addresses a registered version's artifacts: a placeholder.

    The tracking server keeps a version's files at ``<artifacts destination>/<experiment
    id>/models/<model id>/artifacts``. KServe's storage initializer and Seldon's rclone
    read S3 and GCS URIs as MLflow writes them; Azure Blob Storage is an https://
    URL for KServe and an rclone remote (named azureblob in Seldon's storage secret)
    for Seldon, where MLflow writes wasbs://.
    """
    path = "<experiment id>/models/<model id>/artifacts"
    if cloud == "azure":
        if serving == "seldon":
            return f"azureblob://<container>/{path}"
        return f"https://<account>.blob.core.windows.net/<container>/{path}"
    return f"{CLOUDS[cloud].artifact_scheme}://<bucket>/{path}"


@dataclass(frozen=True)
class ReleaseValue:
    """One line of deploy/k8s/release.env: what the cluster serves, filled into a resource.

    `promote`, `rollback` and `rollout` write these values; kustomize copies each
    into its field (kustomization.yaml's replacements), and deploy/render.sh leaves
    out the resources in ``needed_by`` while the value is empty (no such version yet).
    """

    key: str
    # "uri": a version's artifacts; "percent": an integer share of requests, 0-100;
    # "version": a registry version number (empty with its URI).
    check: str
    kind: str
    name: str
    field: str
    default: str
    meaning: str
    needed_by: tuple[tuple[str, str], ...] = ()


def release_values(serving: str, rollout: str, slug: str) -> list[ReleaseValue]:
    """The lines of deploy/k8s/release.env for a serving choice and rollout strategy."""
    values: list[ReleaseValue] = []
    if serving == "kserve":
        shadow = (("InferenceService", f"{slug}-shadow"),) if rollout == "shadow" else ()
        values.append(
            ReleaseValue(
                key="MODEL_URI",
                check="uri",
                kind="InferenceService",
                name=slug,
                field="spec.predictor.model.storageUri",
                default="",
                meaning="what the latest revision serves: the champion, or the version rolling out",
                needed_by=(("InferenceService", slug), *shadow),
            )
        )
        # KServe's MLflow runtime reports no model version of its own: MLServer takes it
        # from its environment, per revision, and the transformer logs what it reports.
        version_field = "spec.predictor.model.env.[name=MLSERVER_MODEL_VERSION].value"
        values.append(
            ReleaseValue(
                key="MODEL_VERSION",
                check="version",
                kind="InferenceService",
                name=slug,
                field=version_field,
                default="",
                meaning="its registry version, which the predictor reports in each answer",
            )
        )
        if rollout == "canary":
            values.append(
                ReleaseValue(
                    key="CANARY_PERCENT",
                    check="percent",
                    kind="InferenceService",
                    name=slug,
                    field="spec.predictor.canaryTrafficPercent",
                    default="5",
                    meaning="the latest revision's share of requests: 5 -> 10 -> 25 -> 50 -> 100",
                )
            )
        if rollout == "shadow":
            values.append(
                ReleaseValue(
                    key="SHADOW_MODEL_URI",
                    check="uri",
                    kind="InferenceService",
                    name=f"{slug}-shadow",
                    field="spec.predictor.model.storageUri",
                    default="",
                    meaning="the challenger the shadow InferenceService scores (empty: no shadow)",
                    needed_by=shadow,
                )
            )
            values.append(
                ReleaseValue(
                    key="SHADOW_MODEL_VERSION",
                    check="version",
                    kind="InferenceService",
                    name=f"{slug}-shadow",
                    field=version_field,
                    default="",
                    meaning="its registry version",
                )
            )
    elif serving == "seldon":
        rolling = rollout in ("canary", "shadow")
        trial = (("Model", f"{slug}-challenger"), ("Experiment", slug)) if rolling else ()
        values.append(
            ReleaseValue(
                key="CHAMPION_URI",
                check="uri",
                kind="Model",
                name=f"{slug}-champion",
                field="spec.storageUri",
                default="",
                meaning=f"the Model {slug}-champion",
                needed_by=(("Model", f"{slug}-champion"), *trial),
            )
        )
        if rolling:
            values.append(
                ReleaseValue(
                    key="CHALLENGER_URI",
                    check="uri",
                    kind="Model",
                    name=f"{slug}-challenger",
                    field="spec.storageUri",
                    default="",
                    meaning=f"the Model {slug}-challenger (empty: no rollout, no Experiment)",
                    needed_by=trial,
                )
            )
        if rollout == "canary":
            for role, weight in (("champion", "95"), ("challenger", "5")):
                values.append(
                    ReleaseValue(
                        key=f"{role.upper()}_WEIGHT",
                        check="percent",
                        kind="Experiment",
                        name=slug,
                        field=f"spec.candidates.[name={slug}-{role}].weight",
                        default=weight,
                        meaning=f"the {role}'s share of requests (the two add up to 100)",
                    )
                )
    return values


# How a version that passed the gate reaches traffic (ROLLOUT_STRATEGY). Every
# strategy stays available at run time; the answer sets the deployments' default.
ROLLOUTS: dict[str, str] = {
    "blue-green": "every request moves to the new champion at once; rollback moves the alias back",
    "canary": "a sticky share of customers, 5 → 10 → 25 → 50 → 100 %, each step checked",
    "shadow": "the new version scores a copy of every request; its answers are logged, not returned",
}

# Distributions the generated package depends on: a package with one of these
# names would shadow it on import.
DEPENDENCY_MODULES = frozenset(
    {
        "bentoml",
        "evidently",
        "feast",
        "httpx",
        "mlflow",
        "numpy",
        "pandas",
        "prefect",
        "prometheus_client",
        "pyarrow",
        "pydantic",
        "pydantic_settings",
        "pytest",
        "rich",
        "sklearn",
        "scipy",
        "typer",
    }
)
# Distributions the generated pyproject.toml names, in any dependency group or as
# its build backend, for any answers (PEP 503 normalised): a project of the same
# name depends on itself, which `uv lock` refuses. tests/test_render.py checks
# this list against every render.
DEPENDENCY_DISTRIBUTIONS = frozenset(
    {
        "adlfs",
        "azure-identity",
        "azure-storage-blob",
        "bentoml",
        "boto3",
        "docker",
        "evidently",
        "feast",
        "gcp-storage-emulator",
        "gcsfs",
        "google-cloud-storage",
        "hatchling",
        "httpx",
        "mlflow",
        "mlflow-skinny",
        "moto",
        "numpy",
        "pandas",
        "prefect",
        "prometheus-client",
        "prometheus-flask-exporter",
        "psycopg",
        "pyarrow",
        "pydantic",
        "pydantic-settings",
        "pytest",
        "redis",
        "rich",
        "ruff",
        "s3fs",
        "schemathesis",
        "scikit-learn",
        "scipy",
        "skops",
        "sqlalchemy",
        "tritonclient",
        "ty",
        "typer",
    }
)
# Names that break tooling even though they are valid identifiers.
RESERVED_PACKAGES = frozenset({"test", "tests", "src", "setup", "conftest"})

# The oldest Python the generated project supports.
PYTHON_VERSION = "3.11"

# Longer names push rendered import lines past the line length, and the
# generated code must be formatted as rendered, for every name.
MAX_PACKAGE_LENGTH = 30

# The slug is the Kubernetes namespace, the value of the app.kubernetes.io/name
# label and the registry repository of every render that deploys: a DNS label of
# at most 63 characters, whatever the cloud. project_slug_error refuses longer
# slugs as soon as the slug is answered; the tighter limits of a cloud and a
# serving choice (NAME_RULES) can only be checked once those are answered.
MAX_SLUG_LENGTH = 63

SLUG_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
PACKAGE_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# No quotes or backslashes: the address lands in a TOML string.
EMAIL_RE = re.compile(r'^[^@\s"\\]+@[^@\s"\\]+\.[A-Za-z]{2,}$')


def slugify(value: str) -> str:
    """Turn a human name into kebab-case: 'Churn Model (v2)' -> 'churn-model-v2'."""
    ascii_value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_value.lower())
    slug = "-".join(words)
    # A slug must start with a letter to double as a CLI and distribution name.
    return slug if not slug or slug[0].isalpha() else f"p-{slug}"


# Unicode categories no answer may hold: control and format characters (an escape,
# a zero-width space, a bidi override) and the line and paragraph separators, which
# end a line for some readers and not for others.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Zl", "Zp"})


def hidden_character_error(value: str, name: str) -> str:
    for char in value:
        if unicodedata.category(char) in HIDDEN_CATEGORIES:
            return (
                f"{name} must not contain control characters or line separators "
                f"(found U+{ord(char):04X} {unicodedata.name(char, 'unnamed')})"
            )
    return ""


def project_name_error(value: str) -> str:
    if not value.strip():
        return "must not be empty"
    if len(value) > 80:
        return "must be at most 80 characters"
    if not any(char.isalnum() for char in value):
        return "must contain at least one letter or digit"
    return hidden_character_error(value, "project_name")


def project_slug_error(value: str) -> str:
    if not value:
        return (
            "is empty: it is derived from the Latin letters and digits of project_name, "
            "which has none; answer project_slug yourself (e.g. 'churn-model')"
        )
    if not SLUG_RE.match(value):
        return (
            f"'{value}' is not kebab-case: use lowercase letters, digits and single "
            "hyphens, starting with a letter (e.g. 'churn-model')"
        )
    if len(value) > MAX_SLUG_LENGTH:
        # Every cloud's and Kubernetes' names need a DNS label at least; the limits
        # that depend on cloud and serving come with serving's validator.
        return (
            f"'{value}' is {len(value)} characters; at most {MAX_SLUG_LENGTH}: the slug "
            "names the Kubernetes namespace and the cloud resources (a DNS label)"
        )
    if value in DEPENDENCY_DISTRIBUTIONS:
        return (
            f"'{value}' is the name of a distribution the project depends on; the project "
            "would depend on itself. Use another name, e.g. 'churn-model'"
        )
    return ""


def package_name_error(value: str) -> str:
    allowed = f"a lowercase Python identifier of at most {MAX_PACKAGE_LENGTH} characters such as 'churn_model'"
    if not value.isidentifier() or not PACKAGE_RE.match(value) or len(value) > MAX_PACKAGE_LENGTH:
        return f"'{value}' is not {allowed}"
    if keyword.iskeyword(value) or keyword.issoftkeyword(value):
        return f"'{value}' is a Python keyword; use {allowed}"
    if value in DEPENDENCY_MODULES:
        return f"'{value}' would shadow the dependency '{value}'; use another name, {allowed}"
    if value in sys.stdlib_module_names:
        return f"'{value}' would shadow the standard-library module '{value}'; use {allowed}"
    if value in RESERVED_PACKAGES:
        return f"'{value}' is reserved for tooling; use {allowed}"
    return ""


def email_error(value: str) -> str:
    if not EMAIL_RE.match(value):
        return f"'{value}' is not an e-mail address such as 'ml-team@example.com'"
    return ""


def text_error(value: str, name: str, max_length: int = 200) -> str:
    """Free text that lands in Python and TOML strings: one line, no quotes or backslashes."""
    if not value.strip():
        return f"{name} must not be empty"
    if len(value) > max_length:
        return f"{name} must be at most {max_length} characters"
    if any(char in value for char in '"\\\n\r'):
        return f'{name} must be a single line without double quotes (") or backslashes'
    return hidden_character_error(value, name)


# What copier reads as a yes/no answer given as text (--data, a data file, defaults). Copier
# takes any other text as yes, so `feature_store=nope` would turn the store on.
BOOLEAN_TEXT = frozenset({"y", "yes", "t", "true", "on", "1", "n", "no", "f", "false", "off", "0"})


def bool_answer_error(value: object, name: str) -> str:
    """``value`` as given (``--data``, or the defaults a caller gave), before copier casts it."""
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, (int, float)) and value in (0, 1):
        return ""
    if isinstance(value, str) and value.strip().lower() in BOOLEAN_TEXT:
        return ""
    return f"{name} must be yes or no (true/false, on/off, 1/0), not {value!r}"


def tier_default(team_size: str, field: str) -> Any:
    """A tier's default for one question, e.g. ``team_size | tier_default('feature_store')``."""
    return getattr(TIERS[team_size], field)


# ---------------------------------------------------------------------------
# Names derived from project_slug
# ---------------------------------------------------------------------------
# Terraform and the Kubernetes manifests name resources after the slug, and each
# provider has its own rule for each kind of name. NAME_RULES lists the names
# whose rule some slug of at most MAX_SLUG_LENGTH characters would break;
# tests/test_validators.py renders the longest and the shortest slug allowed for
# every cloud and checks this table against the rendered files, and lists the
# other slug-derived names there with the limits they stay within for any slug.
# Not here: names that also hold what only Terraform's variables say, such as the
# GCP database users (a service account's email without .gserviceaccount.com,
# which holds var.project_id).
#
# Worst cases stand in for what the render does not fix:
# - infra/variables.tf's name_suffix, appended for names unique across a cloud:
#   a hyphen and up to this many lower-case letters or digits (Azure's compact
#   names append it without the hyphen).
NAME_SUFFIX_LENGTH = {"aws": 16, "gcp": 16, "azure": 8}
# - GCP's local.short_name: trimsuffix(substr(local.name, 0, 20), "-").
SHORT_NAME_LENGTH = 20
# - Azure's local.compact_name: the first 16 letters and digits of the slug, then
#   the suffix without its hyphen.
COMPACT_NAME_LENGTH = 16
# - The longest Azure region name, part of the node resource group AKS names
#   MC_<resource group>_<cluster>_<region> (the template leaves that name to AKS).
LONGEST_AZURE_LOCATION = "germanywestcentral"
# - The feature store and the rollout strategy: their resources count whatever the
#   answers (the online store, KServe's shadow InferenceService), so switching them
#   with `copier update` never meets a slug that no longer fits.

# Kubernetes: Service names and the names Knative derives are DNS-1035 labels.
_DNS_1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_IAM_NAME = r"[\w+=,.@-]+"


@dataclass(frozen=True)
class NameRule:
    """A provider's rule for one name the template derives from project_slug."""

    # "aws", "gcp" or "azure" (that cloud's infra/), or "kubernetes" (deploy/, any cloud).
    provider: str
    # The resource as a user would recognise it.
    resource: str
    # The name, as str.format over name_parts(): {slug}, {short}, {compact}, {suffix}
    # (name_suffix), {location}.
    name: str
    min_length: int
    max_length: int
    # What else the provider requires: a regular expression the whole name matches.
    pattern: str
    # The provider's rule in words, for the message.
    rule: str
    # Where the render names it: "<resource type>.<resource name>.<attribute>" in
    # infra/; a manifest kind ("Service") in deploy/k8s/; or where the provider
    # derives it from: "InferenceService" (KServe appends -predictor or
    # -transformer to its name), "azurerm_kubernetes_cluster.main" (AKS).
    where: str
    # Rendered only when the project deploys to Kubernetes (deploys_to_kubernetes).
    kubernetes: bool = False
    # Rendered only with these serving answers (empty: with every one).
    servings: tuple[str, ...] = ()


NAME_RULES: tuple[NameRule, ...] = (
    NameRule(
        provider="aws",
        resource="S3 artifact bucket",
        name="{slug}-mlflow-artifacts{suffix}",
        min_length=3,
        max_length=63,
        pattern=r"(?!xn--|sthree-|amzn-s3-demo-)[a-z0-9][a-z0-9.-]*[a-z0-9]",
        rule=(
            "S3 allows 3-63 lower-case letters, digits, hyphens and periods, not "
            "starting with xn--, sthree- or amzn-s3-demo-"
        ),
        where="aws_s3_bucket.artifacts.bucket",
    ),
    NameRule(
        provider="aws",
        resource="ECR image repository",
        name="{slug}",
        min_length=2,
        max_length=256,
        pattern=r"[a-z0-9]+([._-][a-z0-9]+)*",
        rule="ECR allows 2-256 lower-case letters and digits, separated by . _ or -",
        where="aws_ecr_repository.images.name",
    ),
    NameRule(
        provider="aws",
        resource="RDS instance identifier of the tracking database",
        name="{slug}-tracking",
        min_length=1,
        max_length=63,
        pattern=r"[a-z](?!.*--)([a-z0-9-]*[a-z0-9])?",
        rule="RDS allows 1-63 letters, digits and single hyphens, starting with a letter",
        where="aws_db_instance.tracking.identifier",
    ),
    NameRule(
        provider="aws",
        resource="security group of the tracking database",
        name="{slug}-database",
        min_length=1,
        max_length=255,
        pattern=r"(?!sg-)[\w .:/()#,@\[\]+=&;{}!$*-]+",
        rule="EC2 allows up to 255 characters, not starting with sg-",
        where="aws_security_group.database.name",
    ),
    NameRule(
        provider="aws",
        resource="IAM role of RDS enhanced monitoring",
        name="{slug}-rds-monitoring",
        min_length=1,
        max_length=64,
        pattern=_IAM_NAME,
        rule="IAM allows role names of 1-64 characters",
        where="aws_iam_role.database_monitoring.name",
    ),
    NameRule(
        provider="aws",
        resource="IAM role of the deploy workflow",
        name="{slug}-ci",
        min_length=1,
        max_length=64,
        pattern=_IAM_NAME,
        rule="IAM allows role names of 1-64 characters",
        where="aws_iam_role.ci.name",
    ),
    NameRule(
        provider="aws",
        resource="IAM role of the tracking server's ServiceAccount",
        name="{slug}-tracking",
        min_length=1,
        max_length=64,
        pattern=_IAM_NAME,
        rule="IAM allows role names of 1-64 characters",
        where="aws_iam_role.workload.name",
        kubernetes=True,
    ),
    NameRule(
        provider="aws",
        resource="IAM role of the EKS cluster",
        name="{slug}-eks-cluster",
        min_length=1,
        max_length=64,
        pattern=_IAM_NAME,
        rule="IAM allows role names of 1-64 characters",
        where="aws_iam_role.cluster.name",
        kubernetes=True,
    ),
    NameRule(
        provider="aws",
        resource="IAM role of the EKS nodes",
        name="{slug}-eks-nodes",
        min_length=1,
        max_length=64,
        pattern=_IAM_NAME,
        rule="IAM allows role names of 1-64 characters",
        where="aws_iam_role.nodes.name",
        kubernetes=True,
    ),
    NameRule(
        provider="aws",
        resource="EKS node group",
        name="{slug}-default",
        min_length=1,
        max_length=63,
        pattern=r"[0-9A-Za-z][0-9A-Za-z_-]*",
        rule="EKS allows node group names of 1-63 letters, digits, hyphens and underscores",
        where="aws_eks_node_group.main.node_group_name",
        kubernetes=True,
    ),
    NameRule(
        provider="gcp",
        resource="Cloud Storage artifact bucket",
        name="{slug}-mlflow-artifacts{suffix}",
        min_length=3,
        max_length=63,
        pattern=r"(?!goog)(?!.*g[o0][o0]gle)[a-z0-9][a-z0-9._-]*[a-z0-9]",
        rule=(
            "Cloud Storage allows 3-63 lower-case letters, digits, hyphens, underscores "
            "and periods, not starting with goog and not containing google"
        ),
        where="google_storage_bucket.artifacts.name",
    ),
    NameRule(
        provider="gcp",
        resource="service account of the deploy workflow",
        name="{short}-ci",
        min_length=6,
        max_length=30,
        pattern=r"[a-z]([-a-z0-9]*[a-z0-9])",
        rule="Google Cloud allows service account ids of 6-30 lower-case letters, digits and hyphens",
        where="google_service_account.ci.account_id",
    ),
    NameRule(
        provider="gcp",
        resource="workload identity pool of the deploy workflow",
        name="{short}-github",
        min_length=4,
        max_length=32,
        pattern=r"(?!gcp-)[a-z0-9-]+",
        rule=(
            "Google Cloud allows pool ids of 4-32 lower-case letters, digits and hyphens, "
            "not starting with gcp- (reserved by Google)"
        ),
        where="google_iam_workload_identity_pool.github.workload_identity_pool_id",
    ),
    NameRule(
        provider="azure",
        resource="Blob Storage artifact container",
        name="{slug}-mlflow-artifacts",
        min_length=3,
        max_length=63,
        pattern=r"[a-z0-9](?!.*--)[a-z0-9-]*[a-z0-9]",
        rule="Azure allows 3-63 lower-case letters, digits and single hyphens",
        where="azurerm_storage_container.artifacts.name",
    ),
    NameRule(
        provider="azure",
        resource="storage account",
        name="{compact}",
        min_length=3,
        max_length=24,
        pattern=r"[a-z0-9]+",
        rule="Azure allows 3-24 lower-case letters and digits",
        where="azurerm_storage_account.artifacts.name",
    ),
    NameRule(
        provider="azure",
        resource="container registry (ACR)",
        name="{compact}",
        min_length=5,
        max_length=50,
        pattern=r"[A-Za-z0-9]+",
        rule="Azure allows 5-50 letters and digits",
        where="azurerm_container_registry.main.name",
    ),
    NameRule(
        provider="azure",
        resource="PostgreSQL flexible server",
        name="{slug}-tracking",
        min_length=3,
        max_length=63,
        pattern=r"[a-z0-9]([a-z0-9-]*[a-z0-9])?",
        rule="Azure allows 3-63 lower-case letters, digits and hyphens",
        where="azurerm_postgresql_flexible_server.tracking.name",
    ),
    NameRule(
        provider="azure",
        resource="Log Analytics workspace",
        name="{slug}-logs",
        min_length=4,
        max_length=63,
        pattern=r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?",
        rule="Azure allows 4-63 letters, digits and hyphens",
        where="azurerm_log_analytics_workspace.main.name",
    ),
    NameRule(
        provider="azure",
        resource="Azure Cache for Redis of the online store",
        name="{slug}-online-store",
        min_length=1,
        max_length=63,
        pattern=r"[A-Za-z0-9](?!.*--)([A-Za-z0-9-]*[A-Za-z0-9])?",
        rule="Azure allows 1-63 letters, digits and single hyphens",
        where="azurerm_redis_cache.online_store.name",
    ),
    NameRule(
        provider="azure",
        resource="private endpoint of the online store",
        name="{slug}-online-store",
        min_length=2,
        max_length=64,
        pattern=r"[A-Za-z0-9]([\w.-]*\w)?",
        rule="Azure allows 2-64 letters, digits, hyphens, underscores and periods",
        where="azurerm_private_endpoint.online_store.name",
    ),
    NameRule(
        provider="azure",
        resource="AKS cluster's DNS prefix",
        name="{slug}",
        min_length=1,
        max_length=54,
        pattern=r"[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?",
        rule="AKS allows DNS prefixes of 1-54 letters, digits and hyphens",
        where="azurerm_kubernetes_cluster.main.dns_prefix",
        kubernetes=True,
    ),
    NameRule(
        provider="azure",
        resource="node resource group AKS creates",
        name="MC_rg-{slug}_{slug}_{location}",
        min_length=1,
        max_length=80,
        pattern=r"[\w.()-]*[\w()-]",
        rule="AKS allows node resource group names of at most 80 characters",
        where="azurerm_kubernetes_cluster.main",
        kubernetes=True,
    ),
    NameRule(
        provider="kubernetes",
        resource="Kubernetes Service of the tracking server",
        name="{slug}-mlflow",
        min_length=1,
        max_length=63,
        pattern=_DNS_1035_LABEL,
        rule="Kubernetes allows Service names of 1-63 lower-case letters, digits and hyphens",
        where="Service",
        kubernetes=True,
    ),
    NameRule(
        provider="kubernetes",
        resource="Kubernetes Service of the model service",
        name="{slug}-service",
        min_length=1,
        max_length=63,
        pattern=_DNS_1035_LABEL,
        rule="Kubernetes allows Service names of 1-63 lower-case letters, digits and hyphens",
        where="Service",
        kubernetes=True,
        servings=("bentoml", "seldon"),
    ),
    # KServe's serverless mode (deploy/README.md) runs each component as a Knative
    # Service named <InferenceService>-<component>, a DNS-1035 label; Knative hashes
    # the longer names it derives in turn (revisions), so those never fail.
    NameRule(
        provider="kubernetes",
        resource="Knative Service KServe creates for the enrichment step (transformer)",
        name="{slug}-transformer",
        min_length=1,
        max_length=63,
        pattern=_DNS_1035_LABEL,
        rule="Knative allows Service names of 1-63 lower-case letters, digits and hyphens",
        where="InferenceService",
        kubernetes=True,
        servings=("kserve",),
    ),
    NameRule(
        provider="kubernetes",
        resource="Knative Service KServe creates for the shadow InferenceService's predictor",
        name="{slug}-shadow-predictor",
        min_length=1,
        max_length=63,
        pattern=_DNS_1035_LABEL,
        rule="Knative allows Service names of 1-63 lower-case letters, digits and hyphens",
        where="InferenceService",
        kubernetes=True,
        servings=("kserve",),
    ),
)


def name_parts(slug: str, cloud: str, *, longest_suffix: bool = False) -> dict[str, str]:
    """What NameRule.name formats from: the slug, the names Terraform derives from it
    and the worst cases of what the render leaves open."""
    suffix = "-" + "x" * NAME_SUFFIX_LENGTH[cloud] if longest_suffix else ""
    return {
        "slug": slug,
        "short": slug[:SHORT_NAME_LENGTH].removesuffix("-"),
        "compact": slug.replace("-", "")[:COMPACT_NAME_LENGTH] + suffix.replace("-", ""),
        "suffix": suffix,
        "location": LONGEST_AZURE_LOCATION,
    }


def name_rules(cloud: str, serving: str, team_size: str) -> list[NameRule]:
    """The rules of the names a render with these answers derives from the slug."""
    kubernetes = team_size in TIERS and deploys_to_kubernetes(team_size, serving)
    return [
        rule
        for rule in NAME_RULES
        if rule.provider in (cloud, "kubernetes")
        and (kubernetes or not rule.kubernetes)
        and (not rule.servings or serving in rule.servings)
    ]


def _name_breaks(rule: NameRule, slug: str, cloud: str) -> tuple[str, str, bool] | None:
    """How the name breaks the rule ("long", "short" or "pattern"), the name, and
    whether it holds the longest name_suffix; None if it fits.

    A name with the suffix is checked without it (the shortest) and with the
    longest one."""
    with_suffix = "{suffix}" in rule.name or "{compact}" in rule.name
    for longest in (False, True) if with_suffix else (False,):
        name = rule.name.format(**name_parts(slug, cloud, longest_suffix=longest))
        if len(name) > rule.max_length:
            return "long", name, longest
        if len(name) < rule.min_length:
            return "short", name, longest
        if not re.fullmatch(rule.pattern, name):
            return "pattern", name, longest
    return None


def slug_length_range(cloud: str, serving: str, team_size: str) -> tuple[int, int]:
    """The shortest and the longest slug every derived name fits (for slugs of
    letters and digits: Azure's compact names drop hyphens)."""
    rules = name_rules(cloud, serving, team_size)
    fitting = [
        length
        for length in range(1, MAX_SLUG_LENGTH + 1)
        if not any(_name_breaks(rule, "a" * length, cloud) for rule in rules)
    ]
    return (fitting[0], fitting[-1]) if fitting else (0, 0)


def resource_name_error(slug: str, cloud: str, serving: str, team_size: str) -> str:
    """Why a name derived from the slug breaks its provider's rule, or "".

    The first broken rule: the message names project_slug, the resource, the name
    (with the worst case of what the render leaves open) and the rule.
    """
    for rule in name_rules(cloud, serving, team_size):
        broken = _name_breaks(rule, slug, cloud)
        if broken is None:
            continue
        problem, name, longest = broken
        notes = []
        if "{compact}" in rule.name:
            notes.append("the slug's letters and digits")
        if "{suffix}" in rule.name or "{compact}" in rule.name:
            notes.append(
                f"with a name_suffix of {NAME_SUFFIX_LENGTH[cloud] + 1} characters, the "
                "longest infra/variables.tf accepts"
                if longest
                else "without a name_suffix"
            )
        if "{location}" in rule.name:
            notes.append(f"in {LONGEST_AZURE_LOCATION}, the longest Azure region name")
        shown = f"the {rule.resource} '{name}'" + (f" ({'; '.join(notes)})" if notes else "")
        shortest, longest_slug = slug_length_range(cloud, serving, team_size)
        answers = f"cloud {cloud}, serving {serving} and team_size {team_size}"
        if problem == "pattern":
            return (
                f"project_slug '{slug}' does not fit: {shown} would break the rule "
                f"that {rule.rule}. Use another project_slug"
            )
        if problem == "long":
            advice = f"at most {longest_slug} characters"
        else:
            counted = "letters and digits" if "{compact}" in rule.name else "characters"
            advice = f"at least {shortest} {counted}"
        return (
            f"project_slug '{slug}' is too {problem}: {shown} would be {len(name)} "
            f"character{'s' * (len(name) != 1)}; {rule.rule}. With {answers}, use a "
            f"project_slug of {advice}"
        )
    return ""


# ---------------------------------------------------------------------------
# Organisation policy (docs/org-defaults.md)
# ---------------------------------------------------------------------------

# Names the YAML file with an organisation's policy; unset means no policy.
POLICY_ENV = "MLOPS_PATTERNS_POLICY"

# The questions a policy may restrict, with every value each can take. A
# question joins this table when the content behind its answers is built.
POLICY_QUESTIONS: dict[str, tuple[object, ...]] = {
    "team_size": tuple(TIERS),
    "feature_store": (False, True),
    "cloud": tuple(CLOUDS),
    "serving": tuple(SERVINGS),
    "rollout_strategy": tuple(ROLLOUTS),
}


class PolicyError(ValueError):
    """The policy file cannot be read or does not follow the format."""


def _shown(value: object) -> str:
    # Spelled as in YAML, so the message can be pasted back into the policy.
    return str(value).lower() if isinstance(value, bool) else str(value)


def load_policy(path: Path) -> dict[str, tuple[object, ...]]:
    """The ``allowed:`` table of a policy file, checked against ``POLICY_QUESTIONS``."""

    def invalid(reason: str) -> PolicyError:
        return PolicyError(f"the organisation policy at {path} is invalid: {reason}")

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        reason = f"(named by {POLICY_ENV}) cannot be read: {error.strerror}"
        raise PolicyError(f"the organisation policy at {path} {reason}") from error
    except yaml.YAMLError as error:
        raise invalid(f"not YAML ({error})") from error
    if not isinstance(data, dict) or set(data) != {"allowed"}:
        raise invalid("expected a mapping with the single key 'allowed'")
    if not isinstance(data["allowed"], dict):
        raise invalid("'allowed' must map question names to lists of values")
    known = ", ".join(POLICY_QUESTIONS)
    allowed: dict[str, tuple[object, ...]] = {}
    for question, values in data["allowed"].items():
        if question not in POLICY_QUESTIONS:
            raise invalid(f"unknown question '{question}'; a policy can restrict {known}")
        if not isinstance(values, list) or not values:
            raise invalid(f"'{question}' must list at least one allowed value")
        choices = POLICY_QUESTIONS[question]
        # `in` alone would take 1 for True: compare types as well.
        for value in values:
            if not any(type(value) is type(c) and value == c for c in choices):
                shown = [_shown(c) for c in choices]
                # e.g. 'true' in quotes for a yes/no question: right text, wrong type.
                hint = " (quoted: write it without quotes)" if _shown(value) in shown else ""
                raise invalid(
                    f"'{question}' cannot be {_shown(value)!r}{hint}; "
                    f"its values are {', '.join(shown)}"
                )
        allowed[question] = tuple(values)
    return allowed


def policy_error(value: object, question: str) -> str:
    """Why the organisation policy forbids this answer, or "" (also without a policy)."""
    location = os.environ.get(POLICY_ENV, "").strip()
    if not location:
        return ""
    path = Path(location).expanduser()
    try:
        allowed = load_policy(path)
    except PolicyError as error:
        return str(error)
    if question in allowed and value not in allowed[question]:
        shown = ", ".join(_shown(v) for v in allowed[question])
        forbidden = f"'{_shown(value)}' is forbidden by the organisation policy at {path}"
        return f"{forbidden}; allowed: {shown}"
    return ""


@pass_context
def _policy_filter(context: Context, value: object, question: str) -> str:
    """``policy_error`` as the validators call it, skipped for recorded answers."""
    # To compute an update's diff, copier re-renders the project from its answers
    # file (its data then holds `_commit`). The policy judges new answers, not
    # that history: otherwise a project whose recorded answer the organisation
    # has since forbidden could never be updated to an allowed one.
    conf = context.get("_copier_conf")
    if conf is not None and "_commit" in conf["data"]:
        return ""
    return policy_error(value, question)


class MlopsFilters(Extension):
    """Filters for question defaults and validators."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters.update(
            slugify=slugify,
            project_name_error=project_name_error,
            project_slug_error=project_slug_error,
            package_name_error=package_name_error,
            email_error=email_error,
            text_error=text_error,
            bool_answer_error=bool_answer_error,
            tier_default=tier_default,
            resource_name_error=resource_name_error,
            policy_error=_policy_filter,
        )


# The answers derived_context reads; the hook waits until all of them exist.
ANSWERS_USED = (
    "_copier_answers",
    "team_size",
    "package_name",
    "project_slug",
    "cloud",
    "serving",
    "rollout_strategy",
)


def derived_context(answers: dict[str, Any]) -> dict[str, Any]:
    """Values the file templates read, computed once from the answers.

    The hook runs for every file and path copier renders (about a thousand per
    project), so the values are made once per set of answers and shared.
    """
    shared = _derived_values(
        answers["team_size"],
        answers["package_name"],
        answers["serving"],
        answers["cloud"],
        answers["rollout_strategy"],
        answers["project_slug"],
    )
    return {**shared, "recorded_answers": answers["_copier_answers"]}


@functools.lru_cache(maxsize=64)
def _derived_values(
    team_size: str, package: str, serving_key: str, cloud: str, rollout: str, slug: str
) -> dict[str, Any]:
    tier = TIERS[team_size]
    serving = SERVINGS.get(serving_key)
    return {
        "tier": asdict(tier),
        "provider": asdict(CLOUDS[cloud]),
        # Copier checks an answer against its choices after this hook has run for
        # the next question's default: an unknown one must not fail here first.
        "serving_choice": asdict(serving) if serving is not None else {},
        # Templates ask this, never tier.kubernetes: kserve and seldon need a cluster.
        "deploys_to_kubernetes": deploys_to_kubernetes(team_size, serving_key),
        "model_uri_example": model_uri_example(serving_key, cloud),
        "release_values": [asdict(value) for value in release_values(serving_key, rollout, slug)],
        "rollout": {"key": rollout, "summary": ROLLOUTS.get(rollout, "")},
        "env_prefix": f"{package.upper()}_",
        "cli_name": slug,
        "model_name": slug,
        "python_version": PYTHON_VERSION,
    }


class MlopsContext(ContextHook):
    """Adds the derived values to the context of every rendered file."""

    def hook(self, context: dict[str, Any]) -> None:
        # Copier also renders settings and messages, some before all questions are answered.
        if all(key in context for key in ANSWERS_USED):
            context.update(derived_context(context))
