"""Answers: bad ones fail with a message naming the question; defaults derive as documented."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from typing import TYPE_CHECKING, Any

import hcl2
import pytest
import yaml

from helpers import copier_questions, extension_module, read_answers

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

# question -> answers that copier must refuse.
BAD_ANSWERS: dict[str, list[object]] = {
    "project_name": ["", "   ", "-- !", "x" * 81, "Churn\x1b[31m Model", "Churn\u2028Model"],
    "project_slug": [
        "",
        "Churn Model",
        "churn_model",
        "Churn-Model",
        "-churn",
        "churn-",
        "churn--model",
        "1churn",
        # A distribution the project depends on: `uv lock` would refuse it later.
        "mlflow",
        "pytest",
        "scikit-learn",
        "prometheus-client",
    ],
    "package_name": [
        "",
        "churn-model",  # not an identifier
        "1churn",
        "Churn",
        "churn model",
        "class",  # keyword
        "import",
        "match",  # soft keyword
        "mlflow",  # would shadow a dependency
        "feast",
        "sklearn",
        "pandas",
        "json",  # would shadow the standard library
        "typing",
        "tests",  # breaks tooling
        "a" * 31,  # longer names break the formatting of rendered imports
    ],
    # Free text lands in TOML and Python strings: one line, no quotes or backslashes.
    "description": [
        "",
        "   ",
        'Says "hi"',
        "back\\slash",
        "two\nlines",
        "x" * 201,
        # Control and format characters, line separators: an invalid TOML string or
        # a line break the project's own lint trips over.
        "ring\x07the bell",
        "one\u2028line",
        "zero\u200bwidth",
        "tab\tseparated",
    ],
    "author_name": ["", "   ", 'The "A" Team', "x" * 81, "ML\x00Team", "ML\u2029Team"],
    "author_email": [
        "",
        'ml"team@example.com',  # would end the TOML string it is written into
        "ml-team",
        "ml-team@",
        "@example.com",
        "ml team@example.com",
        "ml-team@example",
    ],
    # Copier reads any text but no/false/off/0 as yes.
    "feature_store": ["nope", "disabled", "maybe", "2", "yes please"],
    "team_size": ["huge", "Solo", "startup", "solo / startup (1-10 people, a few models)"],
    "cloud": ["Local", "AWS", "s3", "on-prem", "k8s"],
    "serving": [
        "mlflow",
        "KServe",
        "seldon-core",
        "BentoML (the project's Python service, runs anywhere)",
    ],
    "rollout_strategy": ["bluegreen", "Canary", "a/b", "canary (5 -> 10 -> 25 -> 50 -> 100 %)"],
}
# The validator of a question whose answers only an organisation policy restricts.
POLICY_VALIDATOR = "{{{{ {name} | policy_error('{name}') }}}}"
CASES = [(question, value) for question, values in BAD_ANSWERS.items() for value in values]


def _names_question(question: str, message: str) -> bool:
    # Copier's two wordings: a validator's message, or a value outside `choices`.
    return bool(
        re.match(
            rf"(Validation error for question '{question}'|Invalid choice for '{question}'): \S",
            message,
        )
    )


@pytest.mark.parametrize(("question", "value"), CASES, ids=[f"{q}={v!r}" for q, v in CASES])
def test_bad_answer_fails_naming_the_question(
    copie: Any, template_repo: Path, question: str, value: object
) -> None:
    result = copie.copy(extra_answers={question: value}, template_dir=template_repo)

    assert isinstance(result.exception, ValueError), result
    assert _names_question(question, str(result.exception)), str(result.exception)
    written = [path for path in copie.test_dir.rglob("*") if path.is_file()]
    assert written == [], "a refused answer must leave nothing behind"


def test_every_constrained_question_has_bad_answers() -> None:
    # A validator that only applies the organisation policy refuses nothing
    # without one: test_org_defaults.py covers those.
    constrained = {
        name
        for name, spec in copier_questions().items()
        if "choices" in spec
        or ("validator" in spec and spec["validator"] != POLICY_VALIDATOR.format(name=name))
    }
    assert constrained <= BAD_ANSWERS.keys(), "add bad answers for the new question(s)"


def test_defaults_render(render: Callable[..., Path]) -> None:
    project = render()

    answers = read_answers(project)
    assert {key: value for key, value in answers.items() if not key.startswith("_")} == {
        "project_name": "Churn Model",
        "project_slug": "churn-model",
        "package_name": "churn_model",
        "description": (
            "Churn prediction with a reproducible train, register, serve and monitor loop"
        ),
        "author_name": "ML Team",
        "author_email": "ml-team@example.com",
        "team_size": "solo",
        "feature_store": False,
        "cloud": "local",
        "serving": "bentoml",
        "rollout_strategy": "blue-green",
    }
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["name"] == "churn-model"
    assert "churn-model" in pyproject["project"]["scripts"]
    assert (project / "src" / "churn_model" / "__init__.py").is_file()


@pytest.mark.parametrize(
    ("project_name", "slug", "package"),
    [
        ("Fraud Detector", "fraud-detector", "fraud_detector"),
        ("Churn Model (v2)", "churn-model-v2", "churn_model_v2"),
        ("Prévision Clients", "prevision-clients", "prevision_clients"),
        ("2024 Churn", "p-2024-churn", "p_2024_churn"),
    ],
)
def test_slug_and_package_derive_from_the_name(
    render: Callable[..., Path], project_name: str, slug: str, package: str
) -> None:
    project = render({"project_name": project_name})

    answers = read_answers(project)
    assert (answers["project_slug"], answers["package_name"]) == (slug, package)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["name"] == slug
    assert slug in pyproject["project"]["scripts"]
    assert (project / "src" / package / "__init__.py").is_file()


def test_package_derives_from_a_given_slug(render: Callable[..., Path]) -> None:
    answers = read_answers(render({"project_slug": "acme-churn"}))

    assert (answers["project_slug"], answers["package_name"]) == ("acme-churn", "acme_churn")


def test_given_package_name_wins(render: Callable[..., Path]) -> None:
    project = render({"package_name": "churnlib"})

    assert read_answers(project)["package_name"] == "churnlib"
    assert (project / "src" / "churnlib" / "__init__.py").is_file()
    assert not (project / "src" / "churn_model").exists()


@pytest.mark.parametrize(
    ("team_size", "expected"), [("solo", False), ("growth", True), ("enterprise", True)]
)
def test_feature_store_defaults_by_tier(
    render: Callable[..., Path], team_size: str, expected: bool
) -> None:
    assert read_answers(render({"team_size": team_size}))["feature_store"] is expected


@pytest.mark.parametrize(
    ("team_size", "feature_store"), [("solo", True), ("growth", False), ("enterprise", False)]
)
def test_feature_store_default_can_be_overridden(
    render: Callable[..., Path], team_size: str, feature_store: bool
) -> None:
    answers = read_answers(render({"team_size": team_size, "feature_store": feature_store}))

    assert answers["feature_store"] is feature_store


@pytest.mark.parametrize(
    ("team_size", "expected"),
    [("solo", "blue-green"), ("growth", "canary"), ("enterprise", "shadow")],
)
def test_rollout_strategy_defaults_by_tier(
    render: Callable[..., Path], team_size: str, expected: str
) -> None:
    assert read_answers(render({"team_size": team_size}))["rollout_strategy"] == expected


@pytest.mark.parametrize(
    ("team_size", "expected"),
    [("solo", "bentoml"), ("growth", "bentoml"), ("enterprise", "kserve")],
)
def test_serving_defaults_by_tier(
    render: Callable[..., Path], team_size: str, expected: str
) -> None:
    assert read_answers(render({"team_size": team_size}))["serving"] == expected


def test_unusual_but_valid_text_renders_valid_python_and_toml(render: Callable[..., Path]) -> None:
    project = render(
        {
            "project_name": 'Acme\'s "Churn" Model',
            "description": "Predicts who'll churn & why: <ünïcode>, {braces}, `ticks`",
            "author_name": "Zoë O'Neil & Co.",
            "author_email": "zoe.o'neil+ml@example.co.uk",
        }
    )

    answers = read_answers(project)
    assert answers["package_name"] == "acme_s_churn_model"
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["authors"] == [
        {"name": "Zoë O'Neil & Co.", "email": "zoe.o'neil+ml@example.co.uk"}
    ]
    for path in project.rglob("*.py"):
        compile(path.read_text(encoding="utf-8"), str(path), "exec")


@pytest.mark.parametrize(
    ("given", "expected"), [("no", False), ("off", False), ("0", False), ("yes", True), ("1", True)]
)
def test_feature_store_takes_yes_and_no_as_text(
    render: Callable[..., Path], given: str, expected: bool
) -> None:
    """What `--data feature_store=...` passes: text, which copier turns into a bool."""
    assert read_answers(render({"feature_store": given}))["feature_store"] is expected


def test_a_name_without_latin_letters_asks_for_a_slug(
    copie: Any, template_repo: Path, render: Callable[..., Path]
) -> None:
    result = copie.copy(extra_answers={"project_name": "Модель оттока"}, template_dir=template_repo)

    assert isinstance(result.exception, ValueError), result
    message = str(result.exception)
    assert _names_question("project_slug", message), message
    assert "answer project_slug yourself" in message
    # With a slug, the name itself is fine: it is the project's title.
    project = render({"project_name": "Модель оттока", "project_slug": "churn-model"})
    assert (project / "README.md").read_text(encoding="utf-8").startswith("# Модель оттока")


def test_brackets_in_the_description_are_text_in_the_cli_help(
    render: Callable[..., Path],
) -> None:
    """Typer renders help as Rich markup: `[/x]` crashed `--help`, `[experimental]` vanished."""
    description = "Churn [experimental] model, closing tag [/x] included"
    project = render({"description": description})
    package = read_answers(project)["package_name"]
    show_help = (
        "import sys; from typer.testing import CliRunner; "
        f"from {package}.cli import app; "
        "result = CliRunner().invoke(app, ['--help'], terminal_width=200); "
        "print(result.output); sys.exit(result.exit_code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", show_help],
        cwd=project / "src",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert description in " ".join(done.stdout.split()), done.stdout


# ---------------------------------------------------------------------------
# Names derived from project_slug (extensions/mlops.py: NAME_RULES)
# ---------------------------------------------------------------------------


def _slug(length: int) -> str:
    """A kebab-case slug of ``length`` characters whose first 20 end with a hyphen (GCP's
    local.short_name cuts there and trims it) once it is longer than 20."""
    base = "qwertyuiopasdfghjkl-" + "zxcvbnmlkjhgfdsapoiu-" * 3
    slug = base[:length]
    return slug[:-1] + "q" if slug.endswith("-") else slug


# (cloud, serving, team_size) -> the shortest and the longest slug every derived name
# allows. The first four are rendered below at both ends.
SLUG_LENGTHS: dict[tuple[str, str, str], tuple[int, int]] = {
    ("aws", "kserve", "enterprise"): (2, 29),
    ("gcp", "seldon", "enterprise"): (3, 29),
    ("azure", "bentoml", "growth"): (5, 27),
    ("local", "kserve", "enterprise"): (1, 46),
    ("azure", "bentoml", "solo"): (5, 46),
    ("local", "bentoml", "growth"): (1, 55),
    ("local", "bentoml", "solo"): (1, 63),
}
RENDERED_LIMITS = list(SLUG_LENGTHS)[:4]


def _limit_answers(cloud: str, serving: str, team_size: str, slug: str) -> dict[str, object]:
    # Every optional resource rendered: the online store, KServe's shadow InferenceService.
    answers: dict[str, object] = {
        "project_slug": slug,
        "cloud": cloud,
        "serving": serving,
        "team_size": team_size,
        "feature_store": True,
    }
    if serving == "kserve":
        answers["rollout_strategy"] = "shadow"
    if len(slug) > 30:  # package_name's default, the slug in snake case, allows 30
        answers["package_name"] = "churn"
    return answers


def test_slug_length_limits_per_answers() -> None:
    mlops = extension_module()

    assert {key: mlops.slug_length_range(*key) for key in SLUG_LENGTHS} == SLUG_LENGTHS


def test_every_name_rule_is_checked_against_a_render() -> None:
    mlops = extension_module()

    checked = {rule for key in RENDERED_LIMITS for rule in mlops.name_rules(*key)}
    assert [rule.where for rule in mlops.NAME_RULES if rule not in checked] == []


# answers -> how project_slug fails, and the resource the message names.
REFUSED_SLUGS: list[tuple[dict[str, object], str, str]] = [
    ({"cloud": "aws", "team_size": "enterprise", "project_slug": _slug(30)}, "is too long", "S3"),
    (
        {"cloud": "gcp", "team_size": "enterprise", "serving": "seldon", "project_slug": _slug(30)},
        "is too long",
        "Cloud Storage artifact bucket",
    ),
    (
        {"cloud": "azure", "team_size": "growth", "project_slug": _slug(28)},
        "is too long",
        "node resource group AKS creates",
    ),
    (
        {"cloud": "azure", "project_slug": _slug(47), "package_name": "churn"},
        "is too long",
        "Blob Storage artifact container",
    ),
    (
        {"team_size": "enterprise", "project_slug": _slug(47), "package_name": "churn"},
        "is too long",
        "shadow InferenceService's predictor",
    ),
    (
        {"team_size": "growth", "project_slug": _slug(56), "package_name": "churn"},
        "is too long",
        "Kubernetes Service of the model service",
    ),
    ({"cloud": "aws", "project_slug": "q"}, "is too short", "ECR image repository"),
    ({"cloud": "gcp", "project_slug": "qw"}, "is too short", "service account"),
    # Hyphens do not count: the registry's name is the slug's letters and digits.
    ({"cloud": "azure", "project_slug": "q-w-e-r"}, "is too short", "container registry"),
    ({"cloud": "gcp", "project_slug": "gcp-churn"}, "does not fit", "workload identity pool"),
]


@pytest.mark.parametrize(
    ("answers", "problem", "resource"),
    REFUSED_SLUGS,
    ids=[f"{a.get('cloud', 'local')}-{a['project_slug']}" for a, _, _ in REFUSED_SLUGS],
)
def test_a_slug_whose_names_break_a_rule_fails_naming_project_slug_and_the_resource(
    copie: Any, template_repo: Path, answers: dict[str, object], problem: str, resource: str
) -> None:
    result = copie.copy(extra_answers=answers, template_dir=template_repo)

    assert isinstance(result.exception, ValueError), result
    message = str(result.exception)
    # Checked where cloud, serving and team_size are all known: serving's validator.
    assert _names_question("serving", message), message
    assert f": project_slug '{answers['project_slug']}' {problem}: the " in message, message
    assert resource in message, message
    assert [path for path in copie.test_dir.rglob("*") if path.is_file()] == []


def test_a_slug_longer_than_a_dns_label_fails_as_it_is_answered(
    copie: Any, template_repo: Path
) -> None:
    slug = _slug(63) + "q"
    result = copie.copy(
        extra_answers={"project_slug": slug, "package_name": "churn"}, template_dir=template_repo
    )

    assert isinstance(result.exception, ValueError), result
    assert _names_question("project_slug", str(result.exception)), str(result.exception)
    assert "at most 63" in str(result.exception)


@pytest.mark.parametrize(
    ("slug", "cloud", "resource"),
    [
        ("gcp-churn", "gcp", "workload identity pool"),
        ("goog-churn", "gcp", "Cloud Storage artifact bucket"),
        ("churn-google", "gcp", "Cloud Storage artifact bucket"),
        ("sthree-churn", "aws", "S3 artifact bucket"),
        ("amzn-s3-demo-churn", "aws", "S3 artifact bucket"),
        ("sg-churn", "aws", "security group"),
    ],
)
def test_a_prefix_the_provider_reserves_is_refused(slug: str, cloud: str, resource: str) -> None:
    message = extension_module().resource_name_error(slug, cloud, "bentoml", "solo")

    assert message.startswith(f"project_slug '{slug}' does not fit: the {resource}"), message


# --- The table against the rendered files -----------------------------------

# Terraform attributes that name a resource.
NAME_ATTRIBUTES = frozenset(
    {
        "name",
        "bucket",
        "identifier",
        "final_snapshot_identifier",
        "account_id",
        "workload_identity_pool_id",
        "repository_id",
        "dns_prefix",
        "node_group_name",
    }
)
# Attributes that mention the slug without naming anything.
TEXT_ATTRIBUTES = frozenset(
    {"description", "display_name", "member", "subject", "scope", "namespaces"}
)
SLUG_REFERENCE = re.compile(
    r"\$\{(local\.(name|namespace|short_name|compact_name)|var\.name_suffix)\}"
)
# Slug-derived names NAME_RULES leaves out: they stay within their provider's
# limits (min, max) for every slug project_slug_error accepts (at most 63 characters).
FITS_EVERY_SLUG: dict[str, tuple[int, int]] = {
    "aws_db_subnet_group.tracking.name": (1, 255),
    "aws_db_parameter_group.tracking.name": (1, 255),
    "aws_db_instance.tracking.final_snapshot_identifier": (1, 255),
    "aws_iam_policy.database_secret.name": (1, 128),
    "aws_iam_policy.artifacts.name": (1, 128),
    "aws_iam_policy.online_store_read.name": (1, 128),
    "aws_iam_policy.online_store_write.name": (1, 128),
    "aws_eks_cluster.main.name": (1, 100),
    "aws_cloudwatch_log_group.cluster.name": (1, 512),
    "aws_kms_alias.main.name": (1, 256),
    "google_sql_database_instance.tracking.name": (1, 98),
    "google_service_account.workload.account_id": (6, 30),
    "google_service_account.nodes.account_id": (6, 30),
    "google_container_cluster.main.name": (1, 40),
    "google_redis_instance.online_store.name": (1, 40),
    "google_artifact_registry_repository.images.repository_id": (1, 63),
    "azurerm_resource_group.main.name": (1, 90),
    "azurerm_management_lock.tracking.name": (1, 90),
    "azurerm_user_assigned_identity.ci.name": (3, 128),
    "azurerm_user_assigned_identity.workload.name": (3, 128),
    "azurerm_kubernetes_cluster.main.name": (1, 63),
    "azurerm_private_endpoint.online_store.private_service_connection.name": (1, 80),
}
# Slugs every derivation is compared on: both ends, and a hyphen where GCP cuts.
SAMPLE_SLUGS = ("q", "q-w", _slug(20), _slug(21), _slug(40), _slug(63))
DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS_1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _terraform_names(infra: Path, slug: str) -> tuple[dict[str, tuple[str, bool]], list[str]]:
    """Every resource attribute of infra/ that derives from the slug: "<type>.<name>.<path>"
    -> (its expression, the slug written literally as ${local.name}; whether it repeats
    over local.service_accounts), and the attributes that are neither names nor text."""
    literal = re.compile(rf"(?<![\w.-]){re.escape(slug)}(?![\w.])")
    names: dict[str, tuple[str, bool]] = {}
    unknown: list[str] = []

    def walk(where: str, value: object, key: str, for_each: bool) -> None:
        if isinstance(value, dict):
            for child, item in value.items():
                if not child.startswith("__"):
                    walk(f"{where}.{child}", item, child, for_each)
        elif isinstance(value, list):
            for item in value:
                walk(where, item, key, for_each)
        elif isinstance(value, str):
            expression = literal.sub("${local.name}", _unquote(value))
            if not SLUG_REFERENCE.search(expression):
                return
            if key in NAME_ATTRIBUTES:
                names[where] = (expression, for_each)
            elif key not in TEXT_ATTRIBUTES:
                unknown.append(f"{where} = {expression}")

    for path in sorted(infra.glob("*.tf")):
        for block in hcl2.loads(path.read_text(encoding="utf-8")).get("resource", []):
            for type_, named in block.items():
                for name, body in named.items():
                    repeats = _unquote(str(body.get("for_each", ""))) == "${local.service_accounts}"
                    walk(f"{_unquote(type_)}.{_unquote(name)}", body, "", repeats)
    return names, unknown


def _evaluate(
    expression: str, for_each: bool, slug: str, cloud: str, *, longest_suffix: bool
) -> list[str]:
    """The names an expression of _terraform_names gives for a slug (one per
    ServiceAccount when it repeats over local.service_accounts)."""
    parts = extension_module().name_parts(slug, cloud, longest_suffix=longest_suffix)
    text = (
        expression.replace("${local.name}", parts["slug"])
        .replace("${local.namespace}", parts["slug"])
        .replace("${local.short_name}", parts["short"])
        .replace("${local.compact_name}", parts["compact"])
        .replace("${var.name_suffix}", parts["suffix"])
    )
    names = (
        [text.replace("${each.key}", key) for key in ("service", "tracking", "jobs")]
        if for_each
        else [text]
    )
    assert [name for name in names if "${" in name] == [], expression
    return names


def _fits(name: str, min_length: int, max_length: int, pattern: str = r".+") -> bool:
    return min_length <= len(name) <= max_length and re.fullmatch(pattern, name) is not None


def _check_terraform(infra: Path, slug: str, cloud: str, rules: list[Any]) -> None:
    mlops = extension_module()
    text = "\n".join(path.read_text(encoding="utf-8") for path in sorted(infra.glob("*.tf")))
    # The derivations name_parts assumes, as main.tf and variables.tf write them.
    locals_ = {
        key: _unquote(value)
        for block in hcl2.loads((infra / "main.tf").read_text(encoding="utf-8"))["locals"]
        for key, value in block.items()
        if isinstance(value, str)
    }
    assert locals_["name"] == slug
    if cloud == "gcp":
        cut = mlops.SHORT_NAME_LENGTH
        assert locals_["short_name"] == f'${{trimsuffix(substr(local.name, 0, {cut}), "-")}}'
    if cloud == "azure":
        cut = mlops.COMPACT_NAME_LENGTH
        assert locals_["compact_name"] == (
            f'${{substr(replace(local.name, "-", ""), 0, {cut})}}'
            '${replace(var.name_suffix, "-", "")}'
        )
    suffix = f'regex("^(-[a-z0-9]{{1,{mlops.NAME_SUFFIX_LENGTH[cloud]}}})?$", var.name_suffix)'
    assert suffix in text, "name_suffix's longest value drifted from NAME_SUFFIX_LENGTH"

    names, unknown = _terraform_names(infra, slug)
    assert unknown == [], "a slug-derived attribute neither names nor describes: classify it"
    ruled = {rule.where: rule for rule in rules}
    assert sorted(set(names) - set(ruled) - set(FITS_EVERY_SLUG)) == [], (
        "a name derived from the slug is in neither NAME_RULES nor FITS_EVERY_SLUG"
    )
    for rule in rules:
        if rule.where == "azurerm_kubernetes_cluster.main":
            # AKS names the node resource group itself: MC_<group>_<cluster>_<region>.
            assert "node_resource_group" not in text
            group, cluster = (
                names["azurerm_resource_group.main.name"],
                names["azurerm_kubernetes_cluster.main.name"],
            )
            for sample in (*SAMPLE_SLUGS, slug):
                derived = "_".join(
                    [
                        "MC",
                        *_evaluate(*group, sample, cloud, longest_suffix=False),
                        *_evaluate(*cluster, sample, cloud, longest_suffix=False),
                        mlops.LONGEST_AZURE_LOCATION,
                    ]
                )
                assert derived == rule.name.format(**mlops.name_parts(sample, cloud))
            continue
        assert rule.where in names, f"{rule.resource}: {rule.where} is not in the render"
        for longest in (False, True):
            for sample in (*SAMPLE_SLUGS, slug):
                expected = rule.name.format(
                    **mlops.name_parts(sample, cloud, longest_suffix=longest)
                )
                got = _evaluate(*names[rule.where], sample, cloud, longest_suffix=longest)
                assert expected in got, (rule.where, expected, got)
            # The render's names, every ServiceAccount's included, fit the rule.
            for name in _evaluate(*names[rule.where], slug, cloud, longest_suffix=longest):
                assert _fits(name, rule.min_length, rule.max_length, rule.pattern), (rule, name)
    for where, (shortest, longest_name) in FITS_EVERY_SLUG.items():
        if where not in names:
            continue
        for length in range(1, mlops.MAX_SLUG_LENGTH + 1):
            for longest in (False, True):
                for name in _evaluate(*names[where], _slug(length), cloud, longest_suffix=longest):
                    assert _fits(name, shortest, longest_name), (where, name)


def _check_manifests(k8s: Path, slug: str, rules: list[Any]) -> None:
    documents = [
        document
        for path in sorted(k8s.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if isinstance(document, dict) and "metadata" in document
    ]
    assert documents
    for document in documents:
        name = document["metadata"]["name"]
        assert _fits(name, 1, 253, DNS_1123_SUBDOMAIN.pattern), name
        for value in document["metadata"].get("labels", {}).values():
            assert len(str(value)) <= 63, (name, value)
    namespaces = [d["metadata"]["name"] for d in documents if d["kind"] == "Namespace"]
    assert namespaces == [slug]
    assert _fits(slug, 1, 63, DNS_1123_LABEL.pattern)
    found = {
        "Service": [d["metadata"]["name"] for d in documents if d["kind"] == "Service"],
        # KServe's serverless mode: a Knative Service per component, <name>-<component>.
        "InferenceService": [
            f"{d['metadata']['name']}-{component}"
            for d in documents
            if d["kind"] == "InferenceService"
            for component in ("predictor", "transformer")
            if component in d["spec"]
        ],
    }
    for names in found.values():
        for name in names:
            assert _fits(name, 1, 63, DNS_1035_LABEL.pattern), name
    for rule in rules:
        name = rule.name.format(**extension_module().name_parts(slug, "local"))
        assert name in found[rule.where], (rule.resource, name, found[rule.where])
        assert _fits(name, rule.min_length, rule.max_length, rule.pattern), (rule, name)


# The rendered answers at both ends of their slug lengths (no lower end without a cloud).
LIMIT_RENDERS = [
    (key, end)
    for key in RENDERED_LIMITS
    for end in ("longest", "shortest")
    if end == "longest" or SLUG_LENGTHS[key][0] > 1
]


@pytest.mark.parametrize(
    ("key", "end"), LIMIT_RENDERS, ids=["-".join((*key, end)) for key, end in LIMIT_RENDERS]
)
def test_the_slugs_at_the_limits_render_and_their_names_fit_the_rules(
    render: Callable[..., Path], key: tuple[str, str, str], end: str
) -> None:
    """NAME_RULES against the rendered files: every slug-derived name there is in the
    table (or fits any slug), derives as the table says, and fits its rule."""
    mlops = extension_module()
    cloud, serving, team_size = key
    shortest, longest = SLUG_LENGTHS[key]
    slug = _slug(longest if end == "longest" else shortest)

    project = render(_limit_answers(cloud, serving, team_size, slug))

    assert read_answers(project)["project_slug"] == slug
    rules = mlops.name_rules(cloud, serving, team_size)
    if cloud != "local":
        _check_terraform(
            project / "infra", slug, cloud, [rule for rule in rules if rule.provider == cloud]
        )
    _check_manifests(
        project / "deploy" / "k8s", slug, [rule for rule in rules if rule.provider == "kubernetes"]
    )
