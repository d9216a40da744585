"""Every combination's own test suite passes, in an environment shared with its equals."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from helpers import (
    FUZZ_PAIRS,
    STACK_PAIRS,
    answer_space,
    combinations,
    covering,
    failure_message,
    run_generated_suite,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from helpers import Combination, SharedEnvironments


@pytest.mark.slow
def test_generated_suite_passes(
    combination: Combination,
    render: Callable[..., Path],
    shared_envs: SharedEnvironments,
    record_property: Callable[[str, object], None],
) -> None:
    # A render of its own: syncing and testing write into the project.
    project = render(combination.data)

    suite = run_generated_suite(shared_envs, project)

    record_property("sync_seconds", suite.environment.sync_seconds)
    record_property("suite_seconds", suite.seconds)
    print(
        f"{combination.id}: env {suite.environment.key}, "
        f"sync {suite.environment.sync_seconds:.1f} s, suite {suite.seconds:.1f} s"
    )
    if suite.result.returncode != 0:
        pytest.fail(failure_message(suite.result, project))


@pytest.mark.slow
def test_generated_stack_suite_passes(
    stack_combination: Combination,
    render: Callable[..., Path],
    shared_envs: SharedEnvironments,
    record_property: Callable[[str, object], None],
) -> None:
    """The same project against real services started from local binaries on loopback:
    PostgreSQL, Redis, an S3 API, mlflow server, prefect server, Prometheus, Pushgateway."""
    project = render(stack_combination.data)

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
    render: Callable[..., Path],
    shared_envs: SharedEnvironments,
    record_property: Callable[[str, object], None],
) -> None:
    """The running service under schemathesis fuzzing (over 1,000 generated requests, no 5xx)
    and a bounded load run (16 clients for 10 s, no errors)."""
    project = render(fuzz_combination.data)

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
