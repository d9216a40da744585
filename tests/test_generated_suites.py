"""Every combination's own test suite passes, in an environment shared with its equals."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from helpers import failure_message, run_generated_suite

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
    combination: Combination,
    render: Callable[..., Path],
    shared_envs: SharedEnvironments,
    record_property: Callable[[str, object], None],
) -> None:
    """The same project against real services started from local binaries on loopback:
    PostgreSQL, Redis, an S3 API, mlflow server, prefect server, Prometheus, Pushgateway."""
    project = render(combination.data)

    # No Docker engine in CI: the suite takes its local-binaries path (say so, so a
    # machine with an engine still tests the path CI does).
    suite = run_generated_suite(
        shared_envs, project, "-m", "stack", "-s", env={"STACK_MODE": "local"}
    )

    timings = dict(
        re.findall(r"^(stack ready|scheduled training run)\D*([\d.]+) s", suite.result.stdout, re.M)
    )
    for name, seconds in timings.items():
        record_property(name.replace(" ", "_"), float(seconds))
    print(f"{combination.id}: stack suite {suite.seconds:.1f} s, {timings}")
    if suite.result.returncode != 0:
        pytest.fail(failure_message(suite.result, project))
