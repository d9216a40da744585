"""`copier update` from older releases: edits kept, no conflicts, same as a fresh render.

Releases are git tags ``vX.Y.Z`` (CHANGELOG.md); the newest entry of CHANGELOG.md
names the release the working tree is. The ``releases`` fixture builds a throwaway
template repository with this history:

``v0.0.1``
    A synthetic older release, since no real one predates the first: the working
    tree with the differences a real history has (``make_older_release``): a file
    the newer release renamed (``.env.sample``, now ``.env.example``, which needs a
    migration), a file it removed (``setup.cfg``), an older README section and a
    changed default.
every ``v*`` tag of this repository
    Fetched with its own history, so each real release is tested too.
``v<newest CHANGELOG entry>``
    The working tree.

Projects are rendered at a tag with copier's API, committed, edited the way a
team edits them (``apply_user_edits``), committed, and updated to the newest tag.
The reference is always a fresh render of the newest tag with the same answers:
an untouched project must equal it, an edited one must equal it plus the same
edits, file for file and byte for byte.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import copier
import pytest
import yaml

from helpers import (
    GIT_ENV,
    ROOT,
    clean_env,
    copy_working_tree,
    failure_message,
    git,
    read_answers,
    run,
    run_generated_suite,
    tool,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from helpers import SharedEnvironments

    Renders = Callable[[str, dict[str, object]], Path]

SYNTHETIC_TAG = "v0.0.1"
ANSWERS_FILE = ".copier-answers.yml"
MIGRATION = ROOT / "migrations" / "env_sample_to_env_example.py"

# Representative answers: the default (solo, no feature store) and a growth team
# with the feature store, which renders the most files.
REPRESENTATIVE: dict[str, dict[str, object]] = {
    "solo": {},
    "growth-feature_store": {"team_size": "growth", "feature_store": True},
}


def changelog_version() -> str:
    """The version of the newest release entry in CHANGELOG.md, e.g. ``0.1.0``."""
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    match = re.search(r"^## \[(\d+\.\d+\.\d+)\]", text, re.MULTILINE)
    if match is None:
        pytest.fail("CHANGELOG.md has no release entry like `## [0.1.0] - 2026-11-26`")
    return match[1]


NEW_TAG = f"v{changelog_version()}"


def released_tags() -> list[str]:
    """This repository's release tags, except the one the working tree is."""
    listed = git("tag", "--list", "v*", cwd=ROOT).split()
    return sorted(tag for tag in listed if tag != NEW_TAG)


FROM_TAGS = [SYNTHETIC_TAG, *released_tags()]


# ---------------------------------------------------------------------------
# The release repository
# ---------------------------------------------------------------------------


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    if old not in text:
        pytest.fail(f"{path} no longer contains {old!r}: update tests/test_update.py")
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def make_older_release(repo: Path) -> None:
    """Turn the committed working tree in ``repo`` into what 0.0.1 plausibly was."""
    template = repo / "template"
    # Renamed in 0.1.0: the migration in migrations/ carries edits over.
    git("mv", "template/.env.example.jinja", "template/.env.sample.jinja", cwd=repo)
    # An older README section.
    _replace(
        template / "README.md.jinja",
        "`.env.example` lists them. Unset means embedded mode:",
        "`.env.sample` lists them. Leave them unset for embedded mode:",
    )
    # A changed default.
    _replace(
        template / "src" / "{{package_name}}" / "config.py.jinja",
        "n_customers: int = Field(default=3000, ge=200)",
        "n_customers: int = Field(default=2000, ge=200)",
    )
    # Removed in 0.1.0: ruff replaced flake8.
    (template / "setup.cfg").write_text("[flake8]\nmax-line-length = 100\n", encoding="utf-8")


def commit_all(repo: Path, message: str) -> None:
    git("add", "--all", cwd=repo)
    git("-c", "commit.gpgsign=false", "commit", "--quiet", "--allow-empty", "-m", message, cwd=repo)


@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A template repository with the synthetic v0.0.1, the real tags, and NEW_TAG at HEAD."""
    repo = copy_working_tree(tmp_path_factory.mktemp("releases"))
    working_tree = git("rev-parse", "HEAD", cwd=repo).strip()
    make_older_release(repo)
    commit_all(repo, "Release 0.0.1 (synthetic)")
    git("tag", SYNTHETIC_TAG, cwd=repo)
    git("read-tree", "--reset", "-u", working_tree, cwd=repo)
    commit_all(repo, f"Release {NEW_TAG}")
    git("tag", NEW_TAG, cwd=repo)
    for tag in released_tags():
        git(
            "fetch", "--quiet", "--no-tags", str(ROOT), f"refs/tags/{tag}:refs/tags/{tag}", cwd=repo
        )
    return repo


# ---------------------------------------------------------------------------
# Rendering, editing, updating
# ---------------------------------------------------------------------------


def render(releases: Path, dst: Path, ref: str, answers: dict[str, object]) -> Path:
    copier.run_copy(
        str(releases), dst, data=answers, vcs_ref=ref, defaults=True, unsafe=True, quiet=True
    )
    return dst


def start_project(rendered: Path, dst: Path) -> Path:
    """A copy of a render in a new git repository, committed, as a team starts."""
    shutil.copytree(rendered, dst)
    git("init", "--quiet", "--initial-branch=main", cwd=dst)
    commit_all(dst, f"Render mlops-patterns {read_answers(dst)['_commit']}")
    return dst


def update(project: Path, data: dict[str, object] | None = None) -> None:
    """``copier update --trust --defaults`` to NEW_TAG, answers changed by ``data``."""
    copier.run_update(
        project,
        data=data or {},
        vcs_ref=NEW_TAG,
        defaults=True,
        overwrite=True,
        unsafe=True,
        quiet=True,
    )


@pytest.fixture(scope="session")
def rendered(releases: Path, tmp_path_factory: pytest.TempPathFactory) -> Renders:
    """A render per release and set of answers, made once. Read it, never write to it."""
    made: dict[tuple[str, str], Path] = {}

    def _rendered(ref: str, answers: dict[str, object]) -> Path:
        key = (ref, repr(sorted(answers.items())))
        if key not in made:
            made[key] = render(releases, tmp_path_factory.mktemp("render"), ref, answers)
        return made[key]

    return _rendered


@pytest.fixture(scope="session")
def fresh(rendered: Renders) -> Callable[[dict[str, object]], Path]:
    """A fresh render of NEW_TAG with some answers, the reference for updates."""
    return lambda answers: rendered(NEW_TAG, answers)


def package_of(project: Path) -> str:
    return str(read_answers(project)["package_name"])


NEW_TEST = '''\
"""Rules the team added on top of the template's feature contract."""

from {package}.core.schema import FEATURE_NAMES, FEATURES


def test_every_feature_is_described() -> None:
    assert all(spec.description for spec in FEATURES)
    assert "monthly_charges" in FEATURE_NAMES
'''
README_NOTE = (
    "Our data: the nightly billing export, one parquet file per day; the data team\n"
    "owns its schema.\n\n"
)


def apply_user_edits(project: Path) -> None:
    """Edit ``project`` as a team does: four files changed, one added."""
    package = package_of(project)
    core = project / "src" / package / "core"
    # A changed feature definition, with a comment saying why.
    _replace(
        core / "schema.py",
        '    FeatureSpec("monthly_charges", "float64", "Current monthly bill", 0.0, 1000.0),',
        "    # Billing includes taxes since the 2025 contract change.\n"
        '    FeatureSpec("monthly_charges", "float64", "Monthly bill, taxes included", 0.0, 1000.0),',
    )
    # A tuned hyperparameter.
    _replace(core / "model.py", '"C": 1.0,', '"C": 0.8,')
    # An edited README section.
    _replace(
        project / "README.md",
        "## Choices this repository was rendered with",
        README_NOTE + "## Choices this repository was rendered with",
    )
    # A new test.
    new_test = project / "tests" / "test_team_rules.py"
    new_test.write_text(NEW_TEST.format(package=package), encoding="utf-8")


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by posix path, without ``.git`` and the answers' ``_commit``."""
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts[0] == ".git" or not path.is_file():
            continue
        content = path.read_bytes()
        if relative.as_posix() == ANSWERS_FILE:
            content = re.sub(rb"(?m)^_commit: .*\n", b"", content)
        files[relative.as_posix()] = content
    return files


def assert_same_tree(actual: Path, expected: Path) -> None:
    got, want = tree(actual), tree(expected)
    assert sorted(got) == sorted(want), "the file sets differ"
    differing = [name for name in want if got[name] != want[name]]
    assert not differing, f"differ from the reference render: {differing}"


def conflict_test(project: Path) -> subprocess.CompletedProcess[str]:
    """The project's own test for conflicts an update left, run alone (no conftest:
    it needs nothing but pytest, and the project's environment is not synced here)."""
    command = [sys.executable, "-m", "pytest", "--noconftest", "-q", "-p", "no:cacheprovider"]
    return run([*command, "tests/test_update_conflicts.py"], cwd=project, check=False)


def conflicts(project: Path) -> dict[str, list[str]]:
    """What an update left unresolved: unmerged paths, rejects, markers, whitespace errors."""
    unmerged = git("diff", "--name-only", "--diff-filter=U", cwd=project).split()
    rejects = [p.relative_to(project).as_posix() for p in project.rglob("*.rej")]
    markers = [
        name
        for name, content in tree(project).items()
        if re.search(rb"(?m)^(<<<<<<<|>>>>>>>) ", content)
    ]
    check = run(["git", "diff", "--check"], cwd=project, env=clean_env(**GIT_ENV), check=False)
    # Problem lines read `path:line: what`; the offending line itself follows them.
    flagged = re.findall(r"(?m)^(.+?):\d+: ", check.stdout)
    found = {
        "unmerged": unmerged,
        "rejects": rejects,
        "markers": markers,
        "diff --check": sorted(set(flagged)),
    }
    return {kind: names for kind, names in found.items() if names}


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


def test_answers_file_records_the_release(releases: Path, rendered: Renders) -> None:
    for ref in (SYNTHETIC_TAG, NEW_TAG):
        answers = read_answers(rendered(ref, {}))
        assert answers["_commit"] == ref
        assert answers["_src_path"] == str(releases)


@pytest.mark.parametrize("answers", REPRESENTATIVE.values(), ids=REPRESENTATIVE)
@pytest.mark.parametrize("from_tag", FROM_TAGS)
def test_untouched_update_equals_fresh_render(
    rendered: Renders,
    fresh: Callable[[dict[str, object]], Path],
    tmp_path: Path,
    from_tag: str,
    answers: dict[str, object],
) -> None:
    project = start_project(rendered(from_tag, answers), tmp_path / "project")

    update(project)

    assert conflicts(project) == {}
    assert read_answers(project)["_commit"] == NEW_TAG
    assert_same_tree(project, fresh(answers))


@pytest.mark.parametrize("answers", REPRESENTATIVE.values(), ids=REPRESENTATIVE)
@pytest.mark.parametrize("from_tag", FROM_TAGS)
def test_update_keeps_user_edits(
    rendered: Renders,
    fresh: Callable[[dict[str, object]], Path],
    tmp_path: Path,
    from_tag: str,
    answers: dict[str, object],
) -> None:
    project = start_project(rendered(from_tag, answers), tmp_path / "project")
    apply_user_edits(project)
    commit_all(project, "Team edits")

    update(project)

    assert conflicts(project) == {}
    checked = conflict_test(project)
    assert checked.returncode == 0, failure_message(checked, project)
    # The reference: a fresh render of the new release with the same edits.
    expected = tmp_path / "expected"
    shutil.copytree(fresh(answers), expected)
    apply_user_edits(expected)
    assert_same_tree(project, expected)


def test_changing_the_feature_store_answer_adds_and_removes_its_files(
    rendered: Renders, fresh: Callable[[dict[str, object]], Path], tmp_path: Path
) -> None:
    project = start_project(rendered(NEW_TAG, {}), tmp_path / "project")
    without, with_store = fresh({}), fresh({"feature_store": True})
    package = package_of(project)
    store_only = set(tree(with_store)) - set(tree(without))
    # The feature store's own files; the rest of the difference is content.
    assert {name for name in store_only if "/feature_repo/" in name} == {
        f"src/{package}/feature_repo/__init__.py",
        f"src/{package}/feature_repo/definitions.py",
    }

    update(project, {"feature_store": True})
    assert conflicts(project) == {}
    assert read_answers(project)["feature_store"] is True
    assert_same_tree(project, with_store)
    commit_all(project, "Turn the feature store on")

    update(project, {"feature_store": False})
    assert conflicts(project) == {}
    assert_same_tree(project, without)
    assert not (project / "src" / package / "feature_repo").exists()


def test_migration_carries_an_edited_renamed_file_over(
    rendered: Renders, fresh: Callable[[dict[str, object]], Path], tmp_path: Path
) -> None:
    project = start_project(rendered(SYNTHETIC_TAG, {}), tmp_path / "project")
    prefix = str(read_answers(project)["project_slug"]).replace("-", "_").upper()
    team_line = f"{prefix}_SEED=7  # our team's seed\n"
    with (project / ".env.sample").open("a", encoding="utf-8") as sample:
        sample.write(team_line)
    commit_all(project, "Team seed")

    update(project)

    assert not (project / ".env.sample").exists()
    example = (project / ".env.example").read_text(encoding="utf-8")
    assert team_line in example
    # A rename has no common base in copier's three-way merge, so the team's line
    # is shown as a conflict in that file (and only there) for a person to accept.
    found = conflicts(project)
    # The project's own test fails, naming the file, so neither pytest nor CI passes.
    checked = conflict_test(project)
    assert checked.returncode == 1, failure_message(checked, project)
    assert re.search(r"left conflicts: .*then commit: \.env\.example$", checked.stdout, re.M)
    assert found.pop("unmerged") == [".env.example"]
    assert found.pop("markers") == [".env.example"]
    assert found.pop("diff --check") == [".env.example"]
    assert found == {}
    reference = tree(fresh({}))
    other = {name: content for name, content in tree(project).items() if name != ".env.example"}
    assert other == {name: content for name, content in reference.items() if name != ".env.example"}


def test_migration_script_is_idempotent(rendered: Renders, tmp_path: Path) -> None:
    project = start_project(rendered(SYNTHETIC_TAG, {}), tmp_path / "project")
    original = (project / ".env.sample").read_bytes()
    env = clean_env(**GIT_ENV)

    def migrate() -> tuple[str, str, str]:
        done = run([sys.executable, MIGRATION], cwd=project, env=env)
        state = git("status", "--porcelain", cwd=project)
        return done.stderr, state, git("write-tree", cwd=project)

    first_message, first_state, first_index = migrate()
    assert "renamed .env.sample to .env.example" in first_message
    assert (project / ".env.example").read_bytes() == original
    assert first_state.split() == ["R", ".env.sample", "->", ".env.example"]

    second_message, second_state, second_index = migrate()
    assert "nothing to migrate" in second_message
    assert (second_state, second_index) == (first_state, first_index)
    assert (project / ".env.example").read_bytes() == original

    # Both present (a team made its own): neither is touched.
    (project / ".env.sample").write_text("TEAM=1\n", encoding="utf-8")
    third_message, *_ = migrate()
    assert "left as they are" in third_message
    assert (project / ".env.sample").read_text(encoding="utf-8") == "TEAM=1\n"
    assert (project / ".env.example").read_bytes() == original


def test_template_update_workflow_runs_check_update(rendered: Renders, tmp_path: Path) -> None:
    current = start_project(rendered(NEW_TAG, {}), tmp_path / "current")
    behind = start_project(rendered(SYNTHETIC_TAG, {}), tmp_path / "behind")
    workflow = yaml.safe_load(
        (current / ".github" / "workflows" / "template-update.yml").read_text(encoding="utf-8")
    )
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers["schedule"][0]["cron"]
    assert "workflow_dispatch" in triggers
    assert workflow["permissions"] == {"contents": "read"}
    assert "secrets." not in yaml.safe_dump(workflow)
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    script = next(step["run"] for step in steps if "copier check-update" in step.get("run", ""))
    assert "copier check-update --quiet ." in script

    # The step itself, as GitHub runs it (bash -eo pipefail), with uvx from the
    # installed uv: it fails with a warning when behind and passes when current.
    uv_dir = Path(tool("uv")).parent
    for project, status in ((behind, 1), (current, 0)):
        summary = project.parent / f"{project.name}-summary.md"
        env = clean_env(
            GITHUB_STEP_SUMMARY=str(summary),
            PATH=f"{uv_dir}{os.pathsep}{os.environ['PATH']}",
        )
        command = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script]
        done = run(command, cwd=project, env=env, check=False)
        assert done.returncode == status, failure_message(done, project)
        if status:
            assert "::warning title=Template update available::" in done.stdout
            summary_text = summary.read_text(encoding="utf-8")
            assert f"latest version is {NEW_TAG.removeprefix('v')}" in summary_text


@pytest.mark.slow
def test_updated_project_suite_passes(
    rendered: Renders,
    tmp_path: Path,
    shared_envs: SharedEnvironments,
    record_property: Callable[[str, object], None],
) -> None:
    answers = REPRESENTATIVE["growth-feature_store"]
    project = start_project(rendered(SYNTHETIC_TAG, answers), tmp_path / "project")
    apply_user_edits(project)
    commit_all(project, "Team edits")
    started = time.perf_counter()
    update(project)
    record_property("update_seconds", time.perf_counter() - started)
    assert conflicts(project) == {}

    suite = run_generated_suite(shared_envs, project, "-rA")
    record_property("sync_seconds", suite.environment.sync_seconds)
    record_property("suite_seconds", suite.seconds)
    if suite.result.returncode != 0:
        pytest.fail(failure_message(suite.result, project))
    # The team's own test ran with the template's.
    assert "PASSED tests/test_team_rules.py::test_every_feature_is_described" in suite.result.stdout
