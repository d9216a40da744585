"""Every decision that maps copier answers to components lives here.

Two Jinja extensions are loaded from this module (see ``_jinja_extensions`` in
copier.yml):

* ``MlopsFilters`` adds the filters used by question defaults and validators
  (questions are rendered before any file, so they cannot use the context hook).
* ``MlopsContext`` adds the derived values every file template reads, so that
  templates ask ``tier.gate_min_auc`` instead of repeating ``{% if %}`` chains.
"""

from __future__ import annotations

import keyword
import re
import sys
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

from copier_template_extensions import ContextHook
from jinja2 import Environment
from jinja2.ext import Extension


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
    ),
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
# Names that break tooling even though they are valid identifiers.
RESERVED_PACKAGES = frozenset({"test", "tests", "src", "setup", "conftest"})

# The oldest Python the generated project supports.
PYTHON_VERSION = "3.11"

# Longer names push rendered import lines past the line length, and the
# generated code must be formatted as rendered, for every name.
MAX_PACKAGE_LENGTH = 30

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


def project_name_error(value: str) -> str:
    if not value.strip():
        return "must not be empty"
    if len(value) > 80:
        return "must be at most 80 characters"
    if not re.search(r"[A-Za-z]", value):
        return "must contain at least one letter"
    return ""


def project_slug_error(value: str) -> str:
    if not SLUG_RE.match(value):
        return (
            f"'{value}' is not kebab-case: use lowercase letters, digits and single "
            "hyphens, starting with a letter (e.g. 'churn-model')"
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
    return ""


def tier_default(team_size: str, field: str) -> Any:
    """A tier's default for one question, e.g. ``team_size | tier_default('feature_store')``."""
    return getattr(TIERS[team_size], field)


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
            tier_default=tier_default,
        )


# The answers derived_context reads; the hook waits until all of them exist.
ANSWERS_USED = ("_copier_answers", "team_size", "package_name", "project_slug", "cloud", "serving")


def derived_context(answers: dict[str, Any]) -> dict[str, Any]:
    """Values the file templates read, computed once from the answers."""
    tier = TIERS[answers["team_size"]]
    package = answers["package_name"]
    return {
        "tier": asdict(tier),
        "env_prefix": f"{package.upper()}_",
        "cli_name": answers["project_slug"],
        "model_name": answers["project_slug"],
        "python_version": PYTHON_VERSION,
        # Answers that have a single value today are recorded all the same, so
        # a later `copier update` that turns them into choices keeps them.
        "recorded_answers": {
            **answers["_copier_answers"],
            "cloud": answers["cloud"],
            "serving": answers["serving"],
        },
    }


class MlopsContext(ContextHook):
    """Adds the derived values to the context of every rendered file."""

    def hook(self, context: dict[str, Any]) -> None:
        # Copier also renders settings and messages, some before all questions are answered.
        if all(key in context for key in ANSWERS_USED):
            context.update(derived_context(context))
