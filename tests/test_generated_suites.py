"""Every combination's own test suite passes, in an environment shared with its equals."""

from __future__ import annotations

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
