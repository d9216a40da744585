"""Organisation defaults and policy: which source of an answer wins, and what a policy refuses.

Every test renders the template through copier itself (``run_copy``/``run_update``,
or the ``copier`` command where a mechanism exists only there, ``--data-file``).
The precedence they pin is the one documented in docs/org-defaults.md; when
copier changes it, these tests fail and the page must change with them.

Neither the developer's own copier settings nor a policy in their environment
reaches these renders: each test starts with an empty settings file and no
``MLOPS_PATTERNS_POLICY``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import copier
import pytest
import yaml
from copier.errors import UnsafeTemplateError

from helpers import (
    ROOT,
    answer_space,
    clean_env,
    copier_questions,
    extension_module,
    git,
    read_answers,
    run,
    tool,
)

EXAMPLES = ROOT / "examples" / "org"
ORG_SETTINGS = EXAMPLES / "settings.yml"
ORG_POLICY = EXAMPLES / "policy.yml"
POLICY_ENV = "MLOPS_PATTERNS_POLICY"
SETTINGS_ENV = "COPIER_SETTINGS_PATH"


@pytest.fixture(scope="module")
def mlops() -> Any:
    """extensions/mlops.py, imported as copier loads it (it is not a package)."""
    return extension_module()


@pytest.fixture(autouse=True)
def _no_org_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty-settings.yml"
    empty.write_text("defaults: {}\n", encoding="utf-8")
    monkeypatch.setenv(SETTINGS_ENV, str(empty))
    monkeypatch.delenv(POLICY_ENV, raising=False)


def _settings(tmp_path: Path, name: str, **defaults: object) -> Path:
    """A copier settings file with these question defaults (and no trust entries)."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"defaults": defaults}), encoding="utf-8")
    return path


def _copy(template: Path, dst: Path, *, unsafe: bool = True, **kwargs: Any) -> dict[str, Any]:
    """Render with copier's API as `copier copy --defaults` would; return the answers."""
    copier.run_copy(
        str(template), dst, defaults=True, unsafe=unsafe, quiet=True, vcs_ref="HEAD", **kwargs
    )
    return read_answers(dst)


def _update(project: Path, **kwargs: Any) -> dict[str, Any]:
    """`copier update --defaults` with copier's API; return the answers."""
    copier.run_update(
        project, defaults=True, overwrite=True, unsafe=True, quiet=True, vcs_ref="HEAD", **kwargs
    )
    return read_answers(project)


def _commit(project: Path) -> None:
    git("init", "--quiet", "--initial-branch=main", cwd=project)
    git("add", "--all", cwd=project)
    git("-c", "commit.gpgsign=false", "commit", "--quiet", "-m", "Render", cwd=project)


def _chosen(answers: dict[str, Any]) -> tuple[str, bool, str]:
    return answers["team_size"], answers["feature_store"], answers["author_email"]


# ---------------------------------------------------------------------------
# Org defaults: the settings file
# ---------------------------------------------------------------------------


def test_org_settings_file_sets_defaults(
    template_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SETTINGS_ENV, str(ORG_SETTINGS))

    answers = _copy(template_repo, tmp_path / "project")

    # feature_store is not in the settings: the template derives it from the org's tier.
    assert _chosen(answers) == ("growth", True, "ml-platform@acme.example.com")
    assert answers["author_name"] == "Acme ML Platform"


def test_org_settings_file_trusts_the_template(
    template_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = yaml.safe_load(ORG_SETTINGS.read_text(encoding="utf-8"))
    monkeypatch.setenv(SETTINGS_ENV, str(ORG_SETTINGS))
    # The example trusts the org's URL, not this test's copy of the template.
    with pytest.raises(UnsafeTemplateError):
        _copy(template_repo, tmp_path / "untrusted", unsafe=False)

    settings["trust"] = [str(template_repo)]
    trusting = tmp_path / "trusting-settings.yml"
    trusting.write_text(yaml.safe_dump(settings), encoding="utf-8")
    monkeypatch.setenv(SETTINGS_ENV, str(trusting))
    answers = _copy(template_repo, tmp_path / "trusted", unsafe=False)

    assert answers["team_size"] == "growth"


# ---------------------------------------------------------------------------
# Precedence on `copier copy`
# ---------------------------------------------------------------------------

# (options in command-line order, winning team_size): the settings file says
# growth, the data file enterprise, --data solo. The settings file alone, and
# with --data, are among the API cases below.
COPY_CLI_CASES = [
    (("data_file",), "enterprise"),
    (("data_file", "data"), "solo"),
    # --data wins over --data-file whichever comes first.
    (("data", "data_file"), "solo"),
]


@pytest.mark.parametrize(
    ("sources", "winner"), COPY_CLI_CASES, ids=["+".join(s) for s, _ in COPY_CLI_CASES]
)
def test_copy_precedence_on_the_command_line(
    template_repo: Path, tmp_path: Path, sources: tuple[str, ...], winner: str
) -> None:
    settings = _settings(tmp_path, "settings.yml", team_size="growth")
    data_file = tmp_path / "answers.yml"
    data_file.write_text("team_size: enterprise\n", encoding="utf-8")
    arguments = {"data_file": ["--data-file", str(data_file)], "data": ["--data", "team_size=solo"]}
    given = [arg for source in sources for arg in arguments[source]]

    copier_cli = tool("copier")
    command = [copier_cli, "copy", "--quiet", "--trust", "--defaults", "--vcs-ref=HEAD", *given]
    run(
        [*command, template_repo, tmp_path / "project"],
        cwd=tmp_path,
        env=clean_env(**{SETTINGS_ENV: str(settings)}),
    )

    answers = read_answers(tmp_path / "project")
    # The tier-derived default follows whichever tier won.
    assert (answers["team_size"], answers["feature_store"]) == (winner, winner != "solo")


# (API arguments, winning team_size) with the settings file saying growth.
COPY_API_CASES = [
    ({}, "growth"),
    ({"user_defaults": {"team_size": "enterprise"}}, "enterprise"),
    ({"user_defaults": {"team_size": "enterprise"}, "data": {"team_size": "solo"}}, "solo"),
]


@pytest.mark.parametrize(
    ("arguments", "winner"),
    COPY_API_CASES,
    ids=["settings", "settings+user_defaults", "settings+user_defaults+data"],
)
def test_copy_precedence_in_the_api(
    template_repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    arguments: dict[str, Any],
    winner: str,
) -> None:
    monkeypatch.setenv(SETTINGS_ENV, str(_settings(tmp_path, "s.yml", team_size="growth")))

    answers = _copy(template_repo, tmp_path / "project", **arguments)

    assert (answers["team_size"], answers["feature_store"]) == (winner, winner != "solo")


# ---------------------------------------------------------------------------
# Precedence on `copier update`
# ---------------------------------------------------------------------------


def test_update_keeps_recorded_answers_over_org_defaults(
    template_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    monkeypatch.setenv(SETTINGS_ENV, str(ORG_SETTINGS))
    _copy(template_repo, project)
    _commit(project)
    # The org changes its defaults after the project was made.
    new_defaults = {"team_size": "enterprise", "author_email": "mlops@acme.example.com"}
    monkeypatch.setenv(SETTINGS_ENV, str(_settings(tmp_path, "new.yml", **new_defaults)))

    # Recorded answers beat the settings file and user_defaults.
    answers = _update(project, user_defaults={"team_size": "solo"})
    assert _chosen(answers) == ("growth", True, "ml-platform@acme.example.com")

    # A question the project never answered (as when a template release adds
    # one) takes the org's current default on update.
    answers_file = project / ".copier-answers.yml"
    recorded = answers_file.read_text(encoding="utf-8").splitlines(keepends=True)
    answers_file.write_text(
        "".join(line for line in recorded if not line.startswith("author_email:")),
        encoding="utf-8",
    )
    _commit(project)
    # --data beats the recorded answer; the recorded feature_store beats the
    # default the new tier would derive.
    answers = _update(project, data={"team_size": "solo"})
    assert _chosen(answers) == ("solo", True, "mlops@acme.example.com")


# ---------------------------------------------------------------------------
# The organisation policy
# ---------------------------------------------------------------------------


def _refusal(question: str, value: str, allowed: str, policy: Path = ORG_POLICY) -> str:
    return (
        f"Validation error for question '{question}': '{value}' is forbidden by the "
        f"organisation policy at {policy}; allowed: {allowed}"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"team_size": "solo"}, _refusal("team_size", "solo", "growth, enterprise")),
        (
            {"team_size": "growth", "feature_store": False},
            _refusal("feature_store", "false", "true"),
        ),
    ],
    ids=["team_size", "feature_store"],
)
def test_policy_refuses_a_forbidden_answer(
    template_repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    data: dict[str, object],
    message: str,
) -> None:
    monkeypatch.setenv(POLICY_ENV, str(ORG_POLICY))

    with pytest.raises(ValueError, match="Validation error") as refused:
        _copy(template_repo, tmp_path / "project", data=data)

    assert str(refused.value) == message
    assert not (tmp_path / "project").exists(), "a refused answer must leave nothing behind"


def test_policy_refuses_a_forbidden_template_default(
    template_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(POLICY_ENV, str(ORG_POLICY))

    # The template's default tier is solo: an org that forbids it ships a default too.
    with pytest.raises(ValueError, match="Validation error") as refused:
        _copy(template_repo, tmp_path / "no-settings")
    assert str(refused.value) == _refusal("team_size", "solo", "growth, enterprise")

    monkeypatch.setenv(SETTINGS_ENV, str(ORG_SETTINGS))
    answers = _copy(template_repo, tmp_path / "org-settings")
    assert _chosen(answers) == ("growth", True, "ml-platform@acme.example.com")


@pytest.mark.parametrize("variable", [None, ""], ids=["unset", "empty"])
def test_no_policy_restricts_nothing(
    template_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str | None
) -> None:
    if variable is not None:
        monkeypatch.setenv(POLICY_ENV, variable)

    answers = _copy(template_repo, tmp_path / "project", data={"team_size": "solo"})

    assert (answers["team_size"], answers["feature_store"]) == ("solo", False)


# policy file text -> what the message says after "the organisation policy at <path> ".
MALFORMED_POLICIES = {
    "not-yaml": ("allowed: [growth", "is invalid: not YAML"),
    "empty": ("", "is invalid: expected a mapping with the single key 'allowed'"),
    "list": ("- growth\n", "is invalid: expected a mapping with the single key 'allowed'"),
    "other-key": (
        "allowed: {}\nforbidden: {}\n",
        "is invalid: expected a mapping with the single key 'allowed'",
    ),
    "allowed-list": ("allowed: [growth]\n", "is invalid: 'allowed' must map question names"),
    "unknown-question": (
        "allowed: {orchestrator: [airflow]}\n",
        "is invalid: unknown question 'orchestrator'; a policy can restrict team_size, "
        "feature_store, cloud, serving, rollout_strategy",
    ),
    "scalar-values": (
        "allowed: {team_size: growth}\n",
        "is invalid: 'team_size' must list at least one allowed value",
    ),
    "no-values": (
        "allowed: {team_size: []}\n",
        "is invalid: 'team_size' must list at least one allowed value",
    ),
    "unknown-value": (
        "allowed: {team_size: [huge]}\n",
        "is invalid: 'team_size' cannot be 'huge'; its values are solo, growth, enterprise",
    ),
    "string-for-bool": (
        "allowed: {feature_store: ['true']}\n",
        "is invalid: 'feature_store' cannot be 'true' (quoted: write it without quotes); "
        "its values are false, true",
    ),
}


@pytest.mark.parametrize(("text", "reason"), MALFORMED_POLICIES.values(), ids=MALFORMED_POLICIES)
def test_malformed_policy_is_reported_naming_the_file(
    mlops: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, reason: str
) -> None:
    # The validators' own function, without a render: copier adds only its prefix
    # (shown end to end by the next test).
    policy = tmp_path / "policy.yml"
    policy.write_text(text, encoding="utf-8")
    monkeypatch.setenv(POLICY_ENV, str(policy))

    message = mlops.policy_error("growth", "team_size")

    assert message.startswith(f"the organisation policy at {policy} {reason}"), message


def test_malformed_policy_fails_the_render(
    template_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "policy.yml"
    policy.write_text("allowed:\n  orchestrator: [airflow]\n", encoding="utf-8")
    monkeypatch.setenv(POLICY_ENV, str(policy))

    with pytest.raises(ValueError, match="Validation error") as refused:
        _copy(template_repo, tmp_path / "project")

    assert str(refused.value) == (
        f"Validation error for question 'team_size': the organisation policy at {policy} "
        "is invalid: unknown question 'orchestrator'; a policy can restrict team_size, "
        "feature_store, cloud, serving, rollout_strategy"
    )


def test_missing_policy_file_is_reported_naming_it(
    mlops: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "missing" / "policy.yml"
    monkeypatch.setenv(POLICY_ENV, str(policy))

    assert mlops.policy_error("growth", "team_size") == (
        f"the organisation policy at {policy} (named by {POLICY_ENV}) cannot be read: "
        "No such file or directory"
    )


def test_update_moves_a_forbidden_recorded_answer_to_an_allowed_one(
    template_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    _copy(template_repo, project, data={"team_size": "solo"})
    _commit(project)
    # The org forbids solo after the project recorded it.
    monkeypatch.setenv(POLICY_ENV, str(ORG_POLICY))

    # With no allowed default to fall back on, the update stops and says why.
    with pytest.raises(ValueError, match="Validation error") as refused:
        _update(project)
    assert str(refused.value) == _refusal("team_size", "solo", "growth, enterprise")
    assert git("status", "--porcelain", cwd=project) == ""

    # Copier drops recorded answers the policy forbids: team_size comes from
    # --data, and feature_store (recorded false) from the new tier's default.
    answers = _update(project, data={"team_size": "growth"})
    assert (answers["team_size"], answers["feature_store"]) == ("growth", True)


# ---------------------------------------------------------------------------
# Guards
# ---------------------------------------------------------------------------


def test_policy_covers_exactly_the_questions_that_check_it(mlops: Any) -> None:
    checking = {
        name
        for name, spec in copier_questions().items()
        if "policy_error" in str(spec.get("validator", ""))
    }

    assert set(mlops.POLICY_QUESTIONS) == checking
    space = answer_space()
    for question, values in mlops.POLICY_QUESTIONS.items():
        assert values == space[question], f"the policy's values for {question} drifted"
    assert mlops.POLICY_ENV == POLICY_ENV


def test_example_files_are_what_the_docs_show() -> None:
    page = (ROOT / "docs" / "org-defaults.md").read_text(encoding="utf-8")
    for example in (ORG_SETTINGS, ORG_POLICY):
        text = example.read_text(encoding="utf-8")
        assert text in page, f"docs/org-defaults.md must show {example.name} as it is"
