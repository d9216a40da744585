"""A per-part timing table at the end of every run, so CI minutes can be budgeted.

CI has a fixed time limit and every later change adds tests; this table shows where
the minutes go. A part is one slow test function (a generated suite, the stack, fuzz
and container suites, the README demo, the update test) or, for everything else, the
static checks as one part. Each row sums the test items' own durations (setup, call
and teardown), so with xdist the sum exceeds the wall clock; the last line gives the
wall clock of the whole run.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest

STATIC = "static checks (everything not marked slow)"


class PartTimings:
    """Sums test durations by part; registered by conftest.py."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.by_test: dict[str, float] = {}
        self.part_of: dict[str, str] = {}
        self.summaries: list[tuple[str, str]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Called in the xdist controller for every worker's reports as well.
        self.by_test[report.nodeid] = self.by_test.get(report.nodeid, 0.0) + report.duration
        # A slow part's one-line result (the container harness's image sizes and start-up).
        self.summaries += [
            (report.nodeid, str(v)) for k, v in report.user_properties if k == "summary"
        ]
        if report.nodeid not in self.part_of:
            slow = "slow" in report.keywords
            function = report.nodeid.split("::", 1)[-1].split("[", 1)[0]
            self.part_of[report.nodeid] = function if slow else STATIC

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.by_test:
            return
        parts: dict[str, list[float]] = {}
        for nodeid, seconds in self.by_test.items():
            parts.setdefault(self.part_of[nodeid], []).append(seconds)
        terminalreporter.section("time by part")
        header = f"{'part':<48} {'items':>6} {'sum s':>9} {'min s':>7} {'median s':>9} {'max s':>7}"
        terminalreporter.write_line(header)
        for part, values in sorted(parts.items(), key=lambda item: -sum(item[1])):
            terminalreporter.write_line(
                f"{part:<48} {len(values):>6} {sum(values):>9.0f} {min(values):>7.1f} "
                f"{statistics.median(values):>9.1f} {max(values):>7.1f}"
            )
        total = sum(self.by_test.values())
        wall = time.monotonic() - self.started
        for nodeid, line in sorted(self.summaries):
            terminalreporter.write_line(f"{nodeid}: {line}")
        terminalreporter.write_line(
            f"{'all items':<48} {len(self.by_test):>6} {total:>9.0f}   wall clock {wall:.0f} s"
        )
