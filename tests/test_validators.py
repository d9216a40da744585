"""Answers: bad ones fail with a message naming the question; defaults derive as documented."""

from __future__ import annotations

import re
import tomllib
from typing import TYPE_CHECKING, Any

import pytest

from helpers import copier_questions, read_answers

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

# question -> answers that copier must refuse.
BAD_ANSWERS: dict[str, list[object]] = {
    "project_name": ["", "   ", "1234 5678", "x" * 81],
    "project_slug": [
        "",
        "Churn Model",
        "churn_model",
        "Churn-Model",
        "-churn",
        "churn-",
        "churn--model",
        "1churn",
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
    "description": ["", "   ", 'Says "hi"', "back\\slash", "two\nlines", "x" * 201],
    "author_name": ["", "   ", 'The "A" Team', "x" * 81],
    "author_email": [
        "",
        'ml"team@example.com',  # would end the TOML string it is written into
        "ml-team",
        "ml-team@",
        "@example.com",
        "ml team@example.com",
        "ml-team@example",
    ],
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
