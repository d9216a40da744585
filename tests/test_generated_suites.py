"""Every combination's own test suite passes, in an environment shared with its equals.

Combinations that render the same suite (they differ only in the deployments'
configuration) share one run of it; see ``helpers.suite_groups``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from helpers import (
    FUZZ_PAIRS,
    STACK_PAIRS,
    SUITE_BLIND_QUESTIONS,
    answer_space,
    combinations,
    covering,
    failure_message,
    run_generated_suite,
    suite_files,
    suite_fingerprint,
    suite_groups,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from helpers import Combination, SharedEnvironments, SuiteGroup


@pytest.mark.slow
def test_generated_suite_passes(
    suite_group: SuiteGroup,
    rendered: Callable[[Combination], Path],
    render_copy: Callable[[Combination, Path], Path],
    shared_envs: SharedEnvironments,
    record_property: Callable[[str, object], None],
    tmp_path: Path,
) -> None:
    """Every combination of the group renders the same suite, which then runs and passes."""
    projects = {member.id: rendered(member) for member in suite_group.members}
    files = {member_id: suite_files(path) for member_id, path in projects.items()}
    first = suite_group.members[0].id
    # A copy of its own: syncing and testing write into the project.
    project = render_copy(suite_group.members[0], tmp_path / first)
    differing = sorted(
        {
            name
            for listing in files.values()
            for name in listing.keys() | files[first].keys()
            if listing.get(name) != files[first].get(name)
        }
    )
    assert differing == [], (
        "renders that differ only in answers a suite cannot see differ outside "
        f"SUITE_BLIND_FILES and SUITE_BLIND_FOLDERS, in {differing}"
    )
    fingerprint = suite_fingerprint(files[first])

    suite = run_generated_suite(shared_envs, project)

    record_property("sync_seconds", suite.environment.sync_seconds)
    record_property("suite_seconds", suite.seconds)
    print(
        f"{suite_group.id}: {len(projects)} renders of suite {fingerprint}, run in {first}, "
        f"env {suite.environment.key}, sync {suite.environment.sync_seconds:.1f} s, "
        f"suite {suite.seconds:.1f} s"
    )
    if suite.result.returncode != 0:
        pytest.fail(failure_message(suite.result, project))


@pytest.mark.slow
def test_generated_stack_suite_passes(
    stack_combination: Combination,
    render_copy: Callable[[Combination, Path], Path],
    shared_envs: SharedEnvironments,
    record_property: Callable[[str, object], None],
    tmp_path: Path,
) -> None:
    """The same project against real services started from local binaries on loopback:
    PostgreSQL, Redis, an S3 API, mlflow server, prefect server, Prometheus, Pushgateway."""
    project = render_copy(stack_combination, tmp_path / stack_combination.id)

    # No Docker engine in CI: the suite takes its local-binaries path (say so, so a
    # machine with an engine still tests the path CI does).
    suite = run_generated_suite(
        shared_envs, project, "-m", "stack", "-s", env={"STACK_MODE": "local"}
    )

    # What the suite prints: services ready, the scheduled training run, the production
    # check with its retraining (both deployments run through the Prefect server).
    pattern = r"^(stack ready|scheduled training run|production check with retraining)\D*([\d.]+) s"
    timings = dict(re.findall(pattern, suite.result.stdout, re.MULTILINE))
    record_property("suite_seconds", suite.seconds)
    for name, seconds in timings.items():
        record_property(f"{name.replace(' ', '_')}_seconds", float(seconds))
    print(f"{stack_combination.id}: stack suite {suite.seconds:.1f} s, {timings}")
    if suite.result.returncode != 0:
        pytest.fail(failure_message(suite.result, project))


@pytest.mark.slow
def test_generated_fuzz_suite_passes(
    fuzz_combination: Combination,
    render_copy: Callable[[Combination, Path], Path],
    shared_envs: SharedEnvironments,
    record_property: Callable[[str, object], None],
    tmp_path: Path,
) -> None:
    """The running service under schemathesis fuzzing (over 1,000 generated requests, no 5xx)
    and a bounded load run (16 clients for 10 s, no errors)."""
    project = render_copy(fuzz_combination, tmp_path / fuzz_combination.id)

    suite = run_generated_suite(shared_envs, project, "-m", "fuzz", "-s")

    load = re.search(
        r"(?P<requests_per_second>[\d.]+) requests/s, p50 (?P<p50_ms>[\d.]+) ms, "
        r"p99 (?P<p99_ms>[\d.]+) ms",
        suite.result.stdout,
    )
    record_property("suite_seconds", suite.seconds)
    for name, value in (load.groupdict() if load else {}).items():
        record_property(name, float(value))
    print(f"{fuzz_combination.id}: fuzz suite {suite.seconds:.1f} s, load {load and load.group(0)}")
    if suite.result.returncode != 0:
        pytest.fail(failure_message(suite.result, project))


@pytest.mark.parametrize("pairs", [STACK_PAIRS, FUZZ_PAIRS], ids=["stack", "fuzz"])
def test_covering_sets_hold_every_pair_and_every_answer(
    pairs: tuple[tuple[str, str], ...],
) -> None:
    chosen = covering(pairs)
    matrix = combinations()
    for first, second in pairs:
        wanted = {(c[first], c[second]) for c in matrix}
        assert {(c[first], c[second]) for c in chosen} == wanted
    # Every answer of every question occurs somewhere, including the ones the
    # pairs do not name, and the set is smaller than the matrix it stands for.
    for question, values in answer_space().items():
        assert {c[question] for c in chosen} == set(values), question
    assert len(chosen) < len(matrix)


def test_suite_groups_partition_the_matrix() -> None:
    groups = suite_groups()
    members = [member for group in groups for member in group.members]
    # Every combination in exactly one group; a group differs only in blind answers.
    assert sorted(members, key=str) == sorted(combinations(), key=str)
    assert len(members) == len(set(members))
    for group in groups:
        seen = {
            tuple(a for a in m.answers if a[0] not in SUITE_BLIND_QUESTIONS) for m in group.members
        }
        assert len(seen) == 1, group.id
    assert len(groups) < len(members)
