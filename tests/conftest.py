"""Fixtures shared by the template's tests.

The answer space
    Read from copier.yml when tests are collected: every question with ``choices``
    or ``type: bool``, the ones not prompted yet (``when: false``, one choice)
    included. A test that takes a ``combination`` argument runs once per element of
    their cartesian product, so the matrix grows by itself when a later issue adds
    a choice. Ids read like ``growth-no_feature_store-local-bentoml-canary``.
    ``suite_group`` runs once per group of combinations that differ only in answers
    a generated suite cannot see (the rollout strategy, which only the deployments'
    configuration carries): each member is rendered and must carry the same suite,
    which then runs once. Renders that differ in a visible answer yet share all
    but a named module or two of the default suite (the clouds without a feature
    store: ``helpers.SUITE_SIBLINGS``) share that run too, shown file by file and
    package by package; each sibling runs the modules it does not share, and its
    stack suite when due, in its own render and environment. The suites that
    start services (stack, fuzz) run on covering sets, in which every value pair of the questions their services
    depend on occurs (``helpers.covering``): in the same pytest run as the default
    suite of each group that holds a member of the set.

What is rendered
    The working tree, uncommitted changes included. At the start of a session the
    tracked and the untracked-but-not-ignored files are copied into a new git
    repository (``template_repo``) and committed; every render reads that commit
    through pytest-copie (copier's ``run_copy`` with ``vcs_ref="HEAD"``). That is
    the path users take (a git template at a ref, so ``_commit`` is recorded);
    ignored files (caches, ``build/``) stay out as they would from a clone; and
    edits made while a session runs do not leak into half of it.

Shared environments
    A generated suite needs several hundred MB of dependencies. ``shared_envs``
    keeps uv environments per distinct dependency set, keyed by a hash of the
    rendered pyproject's dependency sections, and points uv at one with
    ``UV_PROJECT_ENVIRONMENT``. An environment is locked (a file lock) from its
    ``uv sync`` until the suite run in it has finished, since each sync re-points
    the project's editable install; a parallel worker that finds it taken uses a
    second environment for the same set rather than wait. Environments live in
    ``build/generated-envs/`` (the ``MLOPS_TEMPLATE_ENVS`` variable moves them) and
    later runs reuse them. Packages come from uv's cache at its default location
    (``uv cache dir`` prints it), so a warm machine downloads nothing and a new
    environment costs seconds.

Distribution over xdist workers
    A worker renders a combination once and keeps its tools' verdicts by content,
    so the tests of one combination are collected next to each other
    (``pytest_collection_modifyitems``) and the workers steal work from each other
    (``--dist worksteal``, also when ``-n`` alone implies ``--dist load``, which
    would deal the tests out one by one and make both workers render every
    combination). A worker starts with a contiguous half of the items and a steal
    takes the tail of a queue, so a combination is rendered by one worker, rarely
    two.

Prefect
    Every generated suite's flows run on one ``prefect server`` for the whole run
    (``prefect_server``), started by the first suite that needs it and stopped by
    the run's controller, instead of Prefect's temporary server once per suite.

Timings
    Tests record durations with ``record_property("<what>_seconds", value)``; those
    of half a second or more are printed in a "timings" section at the end of the
    run (xdist included), then the time by part (``timing.RunTimings``).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

import prefect_server
from fast_render import fast_renders
from helpers import (
    ROOT,
    Combination,
    SharedEnvironments,
    combinations,
    copy_working_tree,
    suite_groups,
)
from timing import RunTimings

ENVS_ROOT = Path(os.environ.get("MLOPS_TEMPLATE_ENVS", ROOT / "build" / "generated-envs"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # `combination`: the whole answer space. `suite_group`: the same, grouped by the
    # generated suite each renders (helpers.suite_groups).
    sets = {"combination": combinations, "suite_group": suite_groups}
    for name, make in sets.items():
        if name in metafunc.fixturenames:
            matrix = make()
            # `@where(predicate, ...)` (helpers.py): only the combinations it applies to.
            for marker in metafunc.definition.iter_markers("where"):
                matrix = [c for c in matrix if all(accepts(c) for accepts in marker.args)]
            metafunc.parametrize(name, matrix, ids=[c.id for c in matrix])


def _combination_of(item: pytest.Item) -> Combination | None:
    params = getattr(getattr(item, "callspec", None), "params", {})
    for name in ("combination", "cloud_combination"):
        if isinstance(params.get(name), Combination):
            return params[name]
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests without a combination first (the long ones are among them), then each
    combination's tests together, in the order of ``combinations()``."""
    order = {c.id: index for index, c in enumerate(combinations())}

    def key(indexed: tuple[int, pytest.Item]) -> tuple[int, int, int]:
        position, item = indexed
        combination = _combination_of(item)
        if combination is None:
            return (0, 0, position)
        return (1, order[combination.id], position)

    items[:] = [item for _, item in sorted(enumerate(items), key=key)]


def _dist_given(config: pytest.Config) -> bool:
    args = [*config.invocation_params.args, *shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))]
    return any(str(arg).startswith("--dist") or arg == "-d" for arg in args)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Work stealing for ``-n`` alone, which xdist would turn into ``--dist load``."""
    if config.getvalue("dist") == "load" and not _dist_given(config):
        from xdist.scheduler import WorkStealingScheduling

        return WorkStealingScheduling(config, log)
    return None


def _run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory every xdist worker of this run shares (the base temp dir without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template's working tree, committed into a throwaway git repository.

    One per run, shared by the workers: their renders are then byte-identical
    (``_src_path`` and ``_commit`` included), so one worker's render serves all.
    """
    root = _run_root(tmp_path_factory)
    repo, ready = root / "template", root / "template.ready"
    with FileLock(root / "template.lock"):
        if not ready.exists():
            shutil.rmtree(repo, ignore_errors=True)
            copy_working_tree(repo)
            ready.touch()
    return repo


@pytest.fixture(scope="session")
def render(copie_session: Any, template_repo: Path) -> Callable[..., Path]:
    """Render the template with some answers (defaults for the rest); return the project dir.

    A render that fails re-raises copier's exception. Renders skip work whose
    result the run already has (``fast_render``) unless ``fast=False``.
    """

    def _render(answers: dict[str, object] | None = None, *, fast: bool = True) -> Path:
        with fast_renders() if fast else contextlib.nullcontext():
            result = copie_session.copy(extra_answers=answers or {}, template_dir=template_repo)
        if result.exception is not None:
            raise result.exception
        return Path(result.project_dir)

    return _render


@pytest.fixture(scope="session")
def render_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where ``rendered`` keeps each combination's render: one directory per combination id."""
    cache = _run_root(tmp_path_factory) / "renders"
    cache.mkdir(exist_ok=True)
    return cache


@pytest.fixture(scope="session")
def rendered(render: Callable[..., Path], render_cache: Path) -> Callable[[Combination], Path]:
    """The project rendered for a combination, once per run for all workers. Read only.

    The static checks, the generated suites' group members and the suites that
    start services all need the same renders; a render costs about 0.9 CPU-s
    (1.5 without ``fast_render``), and 216 of them were made twice. The first worker to ask renders under a file
    lock and moves the result into place; the rest read it.
    """

    def _rendered(combination: Combination) -> Path:
        target = render_cache / combination.id
        if not target.exists():
            with FileLock(render_cache / f"{combination.id}.lock"):
                if not target.exists():
                    render(combination.data).rename(target)
        return target

    return _rendered


@pytest.fixture(scope="session")
def render_copy(rendered: Callable[[Combination], Path]) -> Callable[[Combination, Path], Path]:
    """A writable copy of a combination's render (for syncing and running its suite)."""

    def _copy(combination: Combination, destination: Path) -> Path:
        shutil.copytree(rendered(combination), destination, symlinks=True)
        return destination

    return _copy


@pytest.fixture
def project(combination: Combination, rendered: Callable[[Combination], Path]) -> Path:
    """The project rendered for ``combination``, once per run. Read it, never write to it."""
    return rendered(combination)


@pytest.fixture(scope="session")
def shared_envs() -> SharedEnvironments:
    return SharedEnvironments(ENVS_ROOT)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(RunTimings(), "template-run-timings")
    # Before xdist starts its workers, which inherit where the server will be.
    prefect_server.begin_run()


def pytest_unconfigure(config: pytest.Config) -> None:
    prefect_server.end_run()
