"""Every combination's own test suite passes, in an environment shared with its equals.

Combinations that render the same suite (they differ only in the deployments'
configuration) share one run of it; see ``helpers.suite_groups``.
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING

import pytest

from helpers import (
    FUZZ_PAIRS,
    ROOT,
    SIBLING_FILES,
    STACK_PAIRS,
    STACK_SUITE_MODULES,
    SUITE_BLIND_QUESTIONS,
    answer_space,
    combinations,
    covering,
    covering_set,
    default_suite_key,
    failure_message,
    locked_versions,
    planned_runs,
    run_generated_suite,
    same_render,
    service_suites,
    sibling_questions,
    stack_suite_file,
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
    from collections.abc import Callable, Mapping
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
    """Every combination of the group renders the same default suite, which then runs
    once, in the first sibling's render, and passes. The other siblings
    (``SUITE_SIBLINGS``) are shown to differ only in their dependencies, with the
    same version of every package the environments share.

    With it, in the same pytest run, the suites that start services when a member is
    in their covering set: the stack suite against real services started from local
    binaries on loopback (PostgreSQL, Redis, an S3 API, mlflow server, prefect server,
    Prometheus, Pushgateway), and the fuzz suite (over 1,000 schemathesis requests,
    no 5xx, then 16 clients for 10 s, no errors). A sibling runs its own stack suite
    when it is due, and otherwise has every test of its own collected.
    """
    projects = {member: rendered(member) for member in suite_group.members}
    files = {member: suite_files(path) for member, path in projects.items()}
    runs = planned_runs(suite_group)
    main = runs[0].member
    # Members that differ only in blind answers: every suite file the same.
    for member in projects:
        equal = next(run.member for run in runs if same_render(run.member, member))
        assert files[member] == files[equal], (
            f"{member.id} and {equal.id} differ only in answers a suite cannot see, yet "
            f"differ outside SUITE_BLIND_FILES and SUITE_BLIND_FOLDERS: "
            f"{differing(files[member], files[equal])}"
        )
    # Siblings: the same default suite, their dependencies (SIBLING_FILES) aside; the
    # stack suite's modules outside its folder are left out of that, being marked so.
    for module in STACK_SUITE_MODULES:
        text = (projects[main] / module).read_text(encoding="utf-8")
        assert "\npytestmark = pytest.mark.stack\n" in text, f"{module} is not marked stack"
    default_files = suite_files(projects[main], default_only=True)
    for run in runs[1:]:
        apart = differing(suite_files(projects[run.member], default_only=True), default_files)
        assert set(apart) <= SIBLING_FILES, (
            f"SUITE_SIBLINGS: {run.member.id} differs from {main.id} outside "
            f"SIBLING_FILES: {sorted(set(apart) - SIBLING_FILES)}"
        )

    results = []
    for run in runs:
        # A copy of its own: syncing and testing write into the project.
        project = render_copy(run.member, tmp_path / run.member.id)
        # No Docker engine in CI: the stack suite takes its local-binaries path (said
        # here, so a machine with an engine still tests the path CI does).
        env = {"STACK_MODE": "local"} if "stack" in run.suites else None
        suite = run_generated_suite(shared_envs, project, *run.arguments(), env=env)
        results.append((run, project, suite))

    (_, _, first), *others = results
    record_property("sync_seconds", first.environment.sync_seconds)
    record_property("suite_seconds", first.seconds)
    for run, _, suite in others:
        what = "stack" if run.suites else "collect"
        record_property(f"sibling_{what}_seconds", suite.seconds)
    for run, project, suite in results:
        output = suite.result.stdout
        # What the stack suite prints: services ready, the scheduled training run, the
        # production check with its retraining (both deployments run through its
        # Prefect server); and the fuzz suite's load run.
        stack = dict(re.findall(STACK_TIMINGS, output, re.MULTILINE))
        for name, seconds in stack.items():
            record_property(f"{name.replace(' ', '_')}_seconds", float(seconds))
        load = re.search(LOAD_LINE, output)
        for name, value in (load.groupdict() if load else {}).items():
            record_property(name, float(value))
        ran = "+".join((("default",) if run.default else ()) + run.suites) or "collect"
        print(
            f"{suite_group.id}: {len(projects)} renders of default suite "
            f"{suite_fingerprint(default_files)}, run in {run.member.id} with {ran}, "
            f"env {suite.environment.key}, sync {suite.environment.sync_seconds:.1f} s, "
            f"suite {suite.seconds:.1f} s, stack {stack}, load {load and load.group(0)}"
        )
        if suite.result.returncode != 0:
            pytest.fail(failure_message(suite.result, project))
        # The suites this run takes in ran, rather than being deselected in silence.
        if "stack" in run.suites:
            assert "stack ready" in stack, output[-3000:]
        if "fuzz" in run.suites:
            assert load is not None, output[-3000:]
        if not run.default and not run.suites:
            # What the sibling alone has, its stack suite's modules, imported and collected.
            counts = dict(re.findall(r"^(tests/\S+\.py): (\d+)$", output, re.MULTILINE))
            modules = [p.relative_to(project).as_posix() for p in project.glob("tests/**/*.py")]
            for name in filter(stack_suite_file, modules):
                if name.rsplit("/", 1)[-1].startswith("test_"):
                    assert int(counts.get(name, 0)) > 0, (name, output[-3000:])

    # The siblings' environments: what they share, at the same versions.
    main_versions = locked_versions(results[0][1] / "uv.lock")
    for run, project, _ in results[1:]:
        versions = locked_versions(project / "uv.lock")
        changed = {
            name: (main_versions[name], versions[name])
            for name in main_versions.keys() & versions.keys()
            if main_versions[name] != versions[name]
        }
        assert not changed, (
            f"SUITE_SIBLINGS: {run.member.id}'s environment holds other versions of "
            f"packages {main.id}'s ran the shared modules with: {changed}"
        )


def differing(first: Mapping[str, str], second: Mapping[str, str]) -> list[str]:
    """The files two ``suite_files`` listings disagree on."""
    return sorted(
        name for name in first.keys() | second.keys() if first.get(name) != second.get(name)
    )


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
    # Every combination in exactly one group; a group's members differ only in blind
    # answers and, siblings, in a question SUITE_SIBLINGS names, under its answers.
    assert sorted(members, key=str) == sorted(combinations(), key=str)
    assert len(members) == len(set(members))
    for group in groups:
        assert len({default_suite_key(m) for m in group.members}) == 1, group.id
        for first, second in itertools.combinations(group.members, 2):
            apart = {name for name, value in first.answers if second[name] != value}
            allowed = {*SUITE_BLIND_QUESTIONS, *sibling_questions(first)}
            assert apart <= allowed, (first.id, second.id)
    assert len(groups) < len(members)
    # The siblings do merge groups: fewer whole default suites than renders of the suites.
    assert sum(len(group.siblings()) for group in groups) > len(groups)


def test_planned_runs_give_each_member_its_suites_once() -> None:
    for group in suite_groups():
        runs = planned_runs(group)
        # One whole default run, in the first; every sibling has a run in its own render.
        assert [run.default for run in runs] == [True] + [False] * (len(runs) - 1)
        assert sorted(run.member.id for run in runs) == sorted(s.id for s in group.siblings())
        for member in group.members:
            (own,) = [run for run in runs if same_render(run.member, member)]
            # A member of the stack covering set gets its own stack suite run.
            if member in covering_set("stack"):
                assert "stack" in own.suites, member.id
        # The fuzz suite (the same files in every sibling) runs once, with the default suite.
        fuzz_runs = [run for run in runs if "fuzz" in run.suites]
        due = bool(covering_set("fuzz") & set(group.members))
        assert fuzz_runs == ([runs[0]] if due else [])
        # No run takes in a stack suite no member of its render is due.
        for run in runs:
            if "stack" in run.suites:
                assert any(
                    same_render(run.member, m) for m in covering_set("stack") & set(group.members)
                ), run.member.id


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
