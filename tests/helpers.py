"""Plain helpers for the template's tests: the answer space, tools, renders, environments.

Fixtures built on these live in conftest.py, which also explains the design.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from filelock import FileLock, Timeout

import prefect_server

ROOT = Path(__file__).resolve().parents[1]
COPIER_YML = ROOT / "copier.yml"
README = ROOT / "README.md"

# A fixed identity, so commits made by the tests never depend on the user's git config.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "template-tests@example.com",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "template-tests@example.com",
}
# Variables of the calling process that must not reach a rendered project's tools:
# they would point uv at the nox session's environment or change how pytest runs.
LEAKY_ENV = ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT")


# ---------------------------------------------------------------------------
# The answer space
# ---------------------------------------------------------------------------


def module_from_path(name: str, path: Path) -> Any:
    """Import a Python file that is not in a package (a script, copier's extension)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: dataclasses look their module up while the class is built.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@functools.cache
def extension_module() -> Any:
    """extensions/mlops.py, imported the way copier loads it (by path: it is not a package)."""
    return module_from_path("mlops_extension", ROOT / "extensions" / "mlops.py")


def copier_questions() -> dict[str, dict[str, Any]]:
    """The questions of copier.yml by name (settings, which start with ``_``, left out)."""
    config = yaml.safe_load(COPIER_YML.read_text(encoding="utf-8"))
    return {
        name: spec if isinstance(spec, dict) else {"default": spec}
        for name, spec in config.items()
        if not name.startswith("_")
    }


def _choice_values(choices: object) -> tuple[object, ...]:
    # Copier accepts a list of values, a list of [label, value] pairs, or a
    # label -> value mapping whose values may be {value: ..., validator: ...}.
    if isinstance(choices, Mapping):
        items: list[object] = list(choices.values())
    elif isinstance(choices, list):
        items = [c[1] if isinstance(c, list | tuple) else c for c in choices]
    else:
        msg = f"choices given as {type(choices).__name__}: teach _choice_values to read them"
        raise TypeError(msg)
    return tuple(item["value"] if isinstance(item, Mapping) else item for item in items)


def answer_space() -> dict[str, tuple[object, ...]]:
    """Every question with a closed set of answers, and that set, in copier.yml order."""
    space: dict[str, tuple[object, ...]] = {}
    for name, spec in copier_questions().items():
        if "choices" in spec:
            space[name] = _choice_values(spec["choices"])
        elif spec.get("type") == "bool":
            space[name] = (False, True)
    return space


@dataclass(frozen=True)
class Combination:
    """One element of the answer space: an answer to every choice question."""

    answers: tuple[tuple[str, object], ...]

    @property
    def data(self) -> dict[str, object]:
        return dict(self.answers)

    @property
    def id(self) -> str:
        """A readable test id, e.g. ``growth-no_feature_store-local-bentoml``."""
        parts = []
        for name, value in self.answers:
            if isinstance(value, bool):
                parts.append(name if value else f"no_{name}")
            else:
                parts.append(str(value))
        return "-".join(parts)

    def __getitem__(self, name: str) -> object:
        return self.data[name]


def where(*predicates: Callable[[Combination], bool]) -> pytest.MarkDecorator:
    """Parametrize a test's `combination` only with the answers every predicate accepts
    (conftest.py): a render a check does not apply to gets no item, rather than an item
    that passes by returning early."""
    # with_args: pytest would take a lone function argument for the decorated test.
    return pytest.mark.where.with_args(*predicates)


def on_kubernetes(answers: Combination | Mapping[str, object]) -> bool:
    """The tier deploys to Kubernetes, or the serving choice (kserve, seldon) runs only there."""
    return bool(extension_module().deploys_to_kubernetes(answers["team_size"], answers["serving"]))


def off_kubernetes(combination: Combination) -> bool:
    return not on_kubernetes(combination)


def serves_with(*servings: str) -> Callable[[Combination], bool]:
    """A `where` predicate: the serving answer is one of `servings`."""
    return lambda combination: combination["serving"] in servings


def rolls_out(*strategies: str) -> Callable[[Combination], bool]:
    """A `where` predicate: the rollout strategy is one of `strategies`."""
    return lambda combination: combination["rollout_strategy"] in strategies


def combinations() -> list[Combination]:
    """The full cartesian product of the answer space; never filtered."""
    space = answer_space()
    return [
        Combination(tuple(zip(space, values, strict=True)))
        for values in itertools.product(*space.values())
    ]


# Answers that change only the deployments' configuration and the docs, files a
# generated suite never reads: combinations that differ only in them render the
# same suite, so it runs once for all of them (``suite_groups``), and every one of
# them is rendered and shown to carry exactly that suite (``suite_files``).
# `serving` is one of them: every render has both serving paths (the model in the
# service's process, and MLServer on the V2 protocol behind the same service), and
# the answer picks what deploy/ runs on Kubernetes.
SUITE_BLIND_QUESTIONS = ("serving", "rollout_strategy")
# What those answers may change. tests/test_render.py checks that no generated
# test or source file reads them (the stack suite's compose path aside: it runs
# on its own covering set).
SUITE_BLIND_FILES = frozenset(
    {
        ".copier-answers.yml",
        ".env.example",
        "compose.yaml",
        "README.md",
    }
)
# Folders of such files: the Kubernetes manifests and their README, the cluster in
# infra/, the deploy workflow, and the project's docs and decision records.
SUITE_BLIND_FOLDERS = ("deploy", "infra", ".github", "docs")


def suite_blind(relative: str) -> bool:
    """Whether a rendered file (a POSIX path in the project) is one a suite never reads."""
    return relative in SUITE_BLIND_FILES or relative.split("/", 1)[0] in SUITE_BLIND_FOLDERS


# Renders that differ in an answer the suites see, yet run the same default suite:
# (the question, the answers under which its renders share it). Without a feature
# store the cloud changes only the object store: its client and emulator among the
# dependencies, and the stack suite, which holds every test that starts one. Source
# and every default-suite test are the same bytes. Such renders form one group: the
# first runs the default suite; each other, in its own render and environment, runs
# its stack suite when due and otherwise has every test of its own collected.
# ``test_generated_suite_passes`` shows that file by file, and package by package
# that the environments hold the same versions of every package they share. (With
# a feature store the cloud picks the offline and online stores in the source.)
SUITE_SIBLINGS: tuple[tuple[str, dict[str, object]], ...] = (("cloud", {"feature_store": False}),)
# What siblings' default suites may differ in (pyproject.toml compared parsed).
SIBLING_FILES = frozenset({"pyproject.toml"})
# The stack suite's own files: the default suite collects them but runs none. Its
# folder, and the module beside the default suite that starts an object store's
# emulator and a tracking server of its own (marked ``stack``, as the fuzz modules
# beside it are marked ``fuzz``).
STACK_SUITE_FOLDER = "tests/stack/"
STACK_SUITE_MODULES = ("tests/test_artifact_store.py",)


def stack_suite_file(relative: str) -> bool:
    """Whether a rendered file (a POSIX path in the project) belongs to the stack suite."""
    return relative.startswith(STACK_SUITE_FOLDER) or relative in STACK_SUITE_MODULES


def visible_answers(combination: Combination) -> tuple[tuple[str, object], ...]:
    """The answers a generated suite (stack suite included) can see."""
    return tuple(a for a in combination.answers if a[0] not in SUITE_BLIND_QUESTIONS)


def same_render(first: Combination, second: Combination) -> bool:
    """Whether two combinations render the same suites: they differ in blind answers only."""
    return visible_answers(first) == visible_answers(second)


def sibling_questions(combination: Combination) -> set[str]:
    """The ``SUITE_SIBLINGS`` questions whose answers ``combination`` shares a suite across."""
    return {
        question
        for question, when in SUITE_SIBLINGS
        if all(combination[name] == value for name, value in when.items())
    }


def default_suite_key(combination: Combination) -> tuple[tuple[str, object], ...]:
    """The answers that pick a group: the visible ones, less its sibling questions'."""
    siblings = sibling_questions(combination)
    return tuple(a for a in visible_answers(combination) if a[0] not in siblings)


@dataclass(frozen=True)
class SuiteGroup:
    """Combinations that share one run of the default suite: they differ only in
    ``SUITE_BLIND_QUESTIONS`` and in a question of ``SUITE_SIBLINGS``."""

    members: tuple[Combination, ...]

    @property
    def id(self) -> str:
        """Each question's answers among the members, joined, e.g.
        ``solo-no_feature_store-local+aws-bentoml+kserve+seldon-canary+shadow``."""
        parts = []
        for name, _ in self.members[0].answers:
            values = dict.fromkeys(Combination(((name, m[name]),)).id for m in self.members)
            parts.append("+".join(values))
        return "-".join(parts)

    def siblings(self) -> list[Combination]:
        """One member per distinct render of the suites (per visible answers), in order."""
        seen: dict[tuple[tuple[str, object], ...], Combination] = {}
        for member in self.members:
            seen.setdefault(visible_answers(member), member)
        return list(seen.values())


def suite_groups() -> list[SuiteGroup]:
    """Every combination, grouped by the default suite it renders."""
    groups: dict[tuple[tuple[str, object], ...], list[Combination]] = {}
    for combination in combinations():
        groups.setdefault(default_suite_key(combination), []).append(combination)
    return [SuiteGroup(tuple(members)) for members in groups.values()]


def locked_versions(lock_file: Path) -> dict[str, str]:
    """Every package a uv.lock pins, with its version (the project itself left out)."""
    lock = tomllib.loads(lock_file.read_text(encoding="utf-8"))
    return {
        package["name"]: package["version"]
        for package in lock.get("package", [])
        if "version" in package and package.get("source", {}).get("editable") is None
    }


def suite_files(project_dir: Path, *, default_only: bool = False) -> dict[str, str]:
    """Every rendered file but ``SUITE_BLIND_FILES``, with the hash of its content.

    With ``default_only``, what the default suite runs on: the stack suite's files
    left out, and pyproject.toml by its parsed content (its comments left out).
    """
    files = {}
    for relative in project_files(project_dir):
        name = relative.as_posix()
        if suite_blind(name) or (default_only and stack_suite_file(name)):
            continue
        content = (project_dir / relative).read_bytes()
        if default_only and name == "pyproject.toml":
            parsed = tomllib.loads(content.decode("utf-8"))
            content = json.dumps(parsed, sort_keys=True).encode()
        files[name] = hashlib.sha256(content).hexdigest()
    return files


def suite_fingerprint(files: Mapping[str, str]) -> str:
    """One short hash of a ``suite_files`` listing, to name the suite in the output."""
    listing = json.dumps(dict(files), sort_keys=True)
    return hashlib.sha256(listing.encode()).hexdigest()[:16]


# The suites that start services cost minutes per combination, so they run on a
# covering set: every combination whose answers change what a suite exercises,
# taken in pairs. The stack suite's services follow the cloud (object store,
# online store) and the feature store, its monitoring pieces the tier; the fuzz
# suite's service follows the tier and the feature store (it runs embedded, where
# the cloud changes nothing). Every combination still runs its default suite.
STACK_PAIRS = (("cloud", "feature_store"), ("team_size", "feature_store"))
FUZZ_PAIRS = (("team_size", "feature_store"),)
# The generated suite's markers for them, which its default run leaves out.
SERVICE_SUITES = {"stack": STACK_PAIRS, "fuzz": FUZZ_PAIRS}


def covering(pairs: Sequence[tuple[str, str]]) -> list[Combination]:
    """Few combinations, found greedily, in which every value pair of ``pairs`` occurs.

    Among equally good candidates the one whose answers were used least wins, so
    the other questions' values rotate through the set too (each cloud gets a
    fuzz run, say); then the earlier one in ``combinations()``. Deterministic, and
    a new answer for one of the questions grows the set by itself.
    """
    matrix = combinations()
    used: dict[tuple[str, object], int] = {}

    def covered(combination: Combination) -> set[tuple[str, str, object, object]]:
        return {(a, b, combination[a], combination[b]) for a, b in pairs}

    def rank(combination: Combination) -> tuple[int, int]:
        reuse = sum(used.get(answer, 0) for answer in combination.answers)
        return len(covered(combination) & missing), -reuse

    missing = set().union(*(covered(c) for c in matrix))
    chosen: list[Combination] = []
    while missing:
        best = max(matrix, key=rank)
        chosen.append(best)
        missing -= covered(best)
        for answer in best.answers:
            used[answer] = used.get(answer, 0) + 1
    return chosen


@functools.cache
def covering_set(suite: str) -> frozenset[Combination]:
    """The covering set of one of ``SERVICE_SUITES``."""
    return frozenset(covering(SERVICE_SUITES[suite]))


def service_suites(group: SuiteGroup) -> tuple[str, ...]:
    """The suites that start services which a group's run takes in: those whose
    covering set holds a member. A member's suite is the group's suite, and one
    pytest run then pays the imports, the training and the sync once, not thrice."""
    return tuple(name for name in SERVICE_SUITES if covering_set(name) & set(group.members))


def suite_arguments(suites: Sequence[str]) -> list[str]:
    """pytest arguments for the default suite plus the named ``SERVICE_SUITES``."""
    left_out = [f"not {name}" for name in SERVICE_SUITES if name not in suites]
    # An empty -m selects every test; -s shows what they print (timings, load).
    return ["-m", " and ".join(left_out)] + (["-s"] if suites else [])


@dataclass(frozen=True)
class PlannedRun:
    """One pytest run for a group: in which member's render, running what."""

    member: Combination
    # The ``SERVICE_SUITES`` it takes in.
    suites: tuple[str, ...]
    # Whether it runs the default suite. A group's other siblings do not: they run
    # their own stack suite when it is in the covering set, and otherwise collect
    # every test of theirs (the stack suite's modules are what differ).
    default: bool

    def arguments(self) -> list[str]:
        if self.default:
            return suite_arguments(self.suites)
        if self.suites:
            return ["-m", " or ".join(self.suites), "-s"]
        return ["--collect-only", "-q", "-m", ""]


def planned_runs(group: SuiteGroup) -> list[PlannedRun]:
    """The runs that give every member of ``group`` its default suite and the service
    suites of the covering sets it is in: one run of the whole default suite, in the
    render of the sibling that takes the stack suite in (if one does), with the fuzz
    suite when it is due; then one run for each other sibling."""
    members = set(group.members)
    fuzz = ("fuzz",) if covering_set("fuzz") & members else ()

    def takes_stack(sibling: Combination) -> bool:
        return any(same_render(sibling, member) for member in covering_set("stack") & members)

    siblings = sorted(group.siblings(), key=lambda sibling: not takes_stack(sibling))
    first, *others = siblings
    runs = [PlannedRun(first, (("stack",) if takes_stack(first) else ()) + fuzz, True)]
    runs += [PlannedRun(s, ("stack",) if takes_stack(s) else (), False) for s in others]
    return runs


# ---------------------------------------------------------------------------
# Running tools
# ---------------------------------------------------------------------------


def tool(name: str) -> str:
    """A command installed beside the running interpreter (the nox session's), else on PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run the tests through `nox -s tests`")
    return found


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without what would leak into a rendered project's tools."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in LEAKY_ENV and not key.startswith("PYTEST_")
    }
    env.update(overrides)
    return env


def run(
    command: Sequence[str | Path],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command; if it fails (and ``check``), fail the test with the end of its output."""
    args = [str(part) for part in command]
    shown = " ".join(args)
    try:
        done = subprocess.run(
            args,
            cwd=cwd,
            env=dict(env) if env is not None else clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`{shown}` in {cwd} did not finish in {timeout:.0f} s:\n{exc.output}")
    if check and done.returncode != 0:
        pytest.fail(failure_message(done, cwd))
    return done


def failure_message(done: subprocess.CompletedProcess[str], cwd: Path) -> str:
    """A failed command, where it ran, and the last 200 lines of its output."""
    output = "\n".join((done.stdout + done.stderr).splitlines()[-200:])
    return f"`{' '.join(done.args)}` in {cwd} exited {done.returncode}:\n{output}"


def git(*args: str, cwd: Path) -> str:
    return run(["git", *args], cwd=cwd, env=clean_env(**GIT_ENV)).stdout


# ---------------------------------------------------------------------------
# Template and rendered projects
# ---------------------------------------------------------------------------


def copy_working_tree(dst: Path) -> Path:
    """Copy the template repository as it is on disk into a new git repository at ``dst``.

    Tracked and untracked-but-not-ignored files are copied, so the copy equals a
    clone of the working tree as it would be committed; ignored files stay out.
    """
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if not source.exists():  # tracked, but deleted in the working tree
            continue
        target = dst / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    git("init", "--quiet", "--initial-branch=main", cwd=dst)
    git("add", "--all", cwd=dst)
    git("-c", "commit.gpgsign=false", "commit", "--quiet", "-m", "Working tree", cwd=dst)
    return dst


def read_answers(project_dir: Path) -> dict[str, Any]:
    """The rendered project's answers file."""
    text = (project_dir / ".copier-answers.yml").read_text(encoding="utf-8")
    answers: dict[str, Any] = yaml.safe_load(text)
    return answers


def project_files(project_dir: Path) -> list[Path]:
    """Every file of a rendered project, relative to it, sorted."""
    return sorted(p.relative_to(project_dir) for p in project_dir.rglob("*") if p.is_file())


_README_COMMAND = re.compile(r"<!-- command:(?P<name>[\w-]+) -->\s*```bash\n(?P<body>.*?)```", re.S)


def readme_commands(readme: Path = README) -> dict[str, str]:
    """The README's named commands: the fenced bash block after ``<!-- command:NAME -->``."""
    text = readme.read_text(encoding="utf-8")
    return {match["name"]: match["body"].strip() for match in _README_COMMAND.finditer(text)}


# ---------------------------------------------------------------------------
# Shared environments for the generated suites
# ---------------------------------------------------------------------------


def dependency_key(pyproject_path: Path) -> str:
    """Hash of every pyproject section that decides what ``uv sync`` installs."""
    pyproject = tomllib.loads(pyproject_path.read_text(encoding="utf-8"))
    project_table = pyproject.get("project", {})
    relevant = {
        "name": project_table.get("name"),
        "requires-python": project_table.get("requires-python"),
        "dependencies": project_table.get("dependencies", []),
        "optional-dependencies": project_table.get("optional-dependencies", {}),
        "dependency-groups": pyproject.get("dependency-groups", {}),
        "build-system": pyproject.get("build-system", {}),
        "tool.uv": pyproject.get("tool", {}).get("uv", {}),
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class SyncedEnvironment:
    """A synced shared environment, and the process environment that selects it."""

    key: str
    path: Path
    env: dict[str, str]
    sync_seconds: float


class SharedEnvironments:
    """uv environments shared by the combinations that have the same dependencies.

    An environment is in use from its sync until the suite run in it has finished
    (each sync re-points the project's editable install), so it is taken with a
    file lock. A combination that finds every environment for its dependency set
    taken, because a parallel worker is using it, takes a new slot instead of
    waiting: a sync from uv's cache costs seconds, a wait costs a whole suite.
    There are never more slots per set than parallel workers.

    Fixed costs, paid per suite, are kept small. The lock file the first sync of a
    dependency set resolves is reused by the next render of that set in this
    session (a resolution revalidates ~260 packages against the index, ~5 s).
    And bytecode is not compiled at install: Python writes the ``.pyc`` of what a
    suite imports into the environment, once, for the later suites and servers.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        # uv.lock by dependency key, as resolved in this process (one pytest worker).
        self._locks: dict[str, str] = {}

    @contextmanager
    def _free_slot(self, key: str) -> Iterator[Path]:
        for slot in itertools.count():
            lock = FileLock(self.root / f"{key}-{slot}.lock")
            try:
                lock.acquire(blocking=False)
            except Timeout:
                continue
            try:
                yield self.root / f"{key}-{slot}"
            finally:
                lock.release()
            return

    @contextmanager
    def synced(self, project_dir: Path) -> Iterator[SyncedEnvironment]:
        """Sync the project into a shared environment and hold that until the block ends."""
        key = dependency_key(project_dir / "pyproject.toml")
        lock = project_dir / "uv.lock"
        with self._free_slot(key) as path:
            env = clean_env(UV_PROJECT_ENVIRONMENT=str(path), UV_NO_PROGRESS="1")
            # With PYTHONDONTWRITEBYTECODE set (as on CI machines) every server a suite
            # starts would compile mlflow, sklearn and prefect again, ~8 s per start.
            # Compiling the whole environment at sync instead (UV_COMPILE_BYTECODE)
            # costs ~45 CPU-s per new environment and a check of its 37,000 files on
            # every `uv sync` and `uv run`; the imported modules are far fewer.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            if key in self._locks and not lock.exists():
                lock.write_text(self._locks[key], encoding="utf-8")
            started = time.perf_counter()
            run([tool("uv"), "sync"], cwd=project_dir, env=env, timeout=1800)
            seconds = time.perf_counter() - started
            self._locks.setdefault(key, lock.read_text(encoding="utf-8"))
            yield SyncedEnvironment(path.name, path, env, seconds)


@dataclass(frozen=True)
class SuiteRun:
    """A generated project's own test suite, run in its shared environment."""

    result: subprocess.CompletedProcess[str]
    environment: SyncedEnvironment
    seconds: float


def run_generated_suite(
    shared_envs: SharedEnvironments,
    project_dir: Path,
    *pytest_args: str,
    env: Mapping[str, str] | None = None,
) -> SuiteRun:
    """Sync the project's shared environment, then run the README's test command in it,
    its flows on the run's shared Prefect server (``prefect_server``)."""
    with shared_envs.synced(project_dir) as environment:
        prefect = prefect_server.api_url(environment.path / "bin" / "python", environment.env)
        started = time.perf_counter()
        result = run(
            [tool("uv"), "run", "pytest", "-q", *pytest_args],
            cwd=project_dir,
            env={**environment.env, "PREFECT_API_URL": prefect, **(env or {})},
            timeout=1800,
            check=False,
        )
        return SuiteRun(result, environment, time.perf_counter() - started)
