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
    ROOT,
    STACK_PAIRS,
    SUITE_BLIND_QUESTIONS,
    answer_space,
    combinations,
    covering,
    failure_message,
    run_generated_suite,
    service_suites,
    suite_arguments,
    suite_files,
    suite_fingerprint,
    suite_groups,
)

STACK_TIMINGS = (
    r"^(stack ready|scheduled training run|production check with retraining)\D*([\d.]+) s"
)
LOAD_LINE = (
    r"(?P<requests_per_second>[\d.]+) requests/s, p50 (?P<p50_ms>[\d.]+) ms, "
    r"p99 (?P<p99_ms>[\d.]+) ms"
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
    """Every combination of the group renders the same suite, which then runs and passes.

    With it, in the same pytest run, the suites that start services when a member is
    in their covering set: the stack suite against real services started from local
    binaries on loopback (PostgreSQL, Redis, an S3 API, mlflow server, prefect server,
    Prometheus, Pushgateway), and the fuzz suite (over 1,000 schemathesis requests,
    no 5xx, then 16 clients for 10 s, no errors).
    """
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
    extra = service_suites(suite_group)

    # No Docker engine in CI: the stack suite takes its local-binaries path (said
    # here, so a machine with an engine still tests the path CI does).
    env = {"STACK_MODE": "local"} if "stack" in extra else None
    suite = run_generated_suite(shared_envs, project, *suite_arguments(extra), env=env)

    output = suite.result.stdout
    record_property("sync_seconds", suite.environment.sync_seconds)
    record_property("suite_seconds", suite.seconds)
    # What the stack suite prints: services ready, the scheduled training run, the
    # production check with its retraining (both deployments run through its Prefect
    # server); and the fuzz suite's load run.
    stack = dict(re.findall(STACK_TIMINGS, output, re.MULTILINE))
    for name, seconds in stack.items():
        record_property(f"{name.replace(' ', '_')}_seconds", float(seconds))
    load = re.search(LOAD_LINE, output)
    for name, value in (load.groupdict() if load else {}).items():
        record_property(name, float(value))
    print(
        f"{suite_group.id}: {len(projects)} renders of suite {fingerprint}, run in {first} "
        f"with {'+'.join(('default', *extra))}, env {suite.environment.key}, "
        f"sync {suite.environment.sync_seconds:.1f} s, suite {suite.seconds:.1f} s, "
        f"stack {stack}, load {load and load.group(0)}"
    )
    if suite.result.returncode != 0:
        pytest.fail(failure_message(suite.result, project))
    # The suites this group takes in ran, rather than being deselected in silence.
    if "stack" in extra:
        assert "stack ready" in stack, output[-3000:]
    if "fuzz" in extra:
        assert load is not None, output[-3000:]


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


def test_each_service_suite_runs_with_the_groups_of_its_covering_set() -> None:
    groups = suite_groups()
    for suite, pairs in (("stack", STACK_PAIRS), ("fuzz", FUZZ_PAIRS)):
        chosen = covering(pairs)
        # Every chosen combination's group runs the suite ...
        for combination in chosen:
            (group,) = [g for g in groups if combination in g.members]
            assert suite in service_suites(group), (suite, combination.id)
        # ... and no other group pays minutes for it.
        taking = [group for group in groups if suite in service_suites(group)]
        for group in taking:
            assert any(member in chosen for member in group.members), (suite, group.id)
        assert 0 < len(taking) < len(groups), suite


def test_suite_arguments_select_the_default_suite_plus_the_named_ones() -> None:
    # Nothing extra: what the generated pyproject's addopts select by itself.
    default = suite_arguments(())
    pyproject = (ROOT / "template" / "pyproject.toml.jinja").read_text(encoding="utf-8")
    assert f"-m '{default[1]}'" in pyproject
    assert default == ["-m", "not stack and not fuzz"]
    assert suite_arguments(("fuzz",)) == ["-m", "not stack", "-s"]
    assert suite_arguments(("stack",)) == ["-m", "not fuzz", "-s"]
    # Both: an empty marker expression, which pytest takes as "every test".
    assert suite_arguments(("stack", "fuzz")) == ["-m", "", "-s"]
