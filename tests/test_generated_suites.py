"""Every combination's own test suite passes, in an environment shared with its equals."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from helpers import failure_message, run, tool

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

    with shared_envs.synced(project) as environment:
        started = time.perf_counter()
        # The command the generated README gives, against the shared environment.
        suite = run(
            [tool("uv"), "run", "pytest", "-q"],
            cwd=project,
            env=environment.env,
            timeout=1800,
            check=False,
        )
        suite_seconds = time.perf_counter() - started

    record_property("sync_seconds", environment.sync_seconds)
    record_property("suite_seconds", suite_seconds)
    print(
        f"{combination.id}: env {environment.key}, sync {environment.sync_seconds:.1f} s, "
        f"suite {suite_seconds:.1f} s"
    )
    if suite.returncode != 0:
        pytest.fail(failure_message(suite, project))
