"""Where a run's time went, printed at its end, so CI minutes can be budgeted.

Two sections. "timings": the ``*_seconds`` properties tests record with
``record_property`` (a suite's sync and run, the stack's start-up), per test, for
the tests that recorded half a second or more. "time by part": the table below.

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


# Rows of the "timings" section below this many seconds in all are left out: there
# are thousands of static checks, most of which record a tool's run of 0.0 s.
SHOWN_FROM_SECONDS = 0.5


class RunTimings:
    """Collects durations and recorded timings from test reports; registered by conftest.py."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.by_test: dict[str, float] = {}
        self.part_of: dict[str, str] = {}
        self.summaries: list[tuple[str, str]] = []
        self.recorded: list[tuple[str, list[tuple[str, float]]]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Called in the xdist controller for every worker's reports as well.
        self.by_test[report.nodeid] = self.by_test.get(report.nodeid, 0.0) + report.duration
        values = [(k, float(v)) for k, v in report.user_properties if k.endswith("_seconds")]
        if report.when == "call" and values:
            self.recorded.append((report.nodeid, values))
        # A slow part's one-line result (the container harness's image sizes and start-up).
        self.summaries += [
            (report.nodeid, str(v)) for k, v in report.user_properties if k == "summary"
        ]
        if report.nodeid not in self.part_of:
            slow = "slow" in report.keywords
            function = report.nodeid.split("::", 1)[-1].split("[", 1)[0]
            self.part_of[report.nodeid] = function if slow else STATIC

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        self._recorded(terminalreporter)
        if self.by_test:
            self._parts(terminalreporter)

    def _recorded(self, terminalreporter: Any) -> None:
        if not self.recorded:
            return
        shown = [
            (nodeid, values)
            for nodeid, values in sorted(self.recorded)
            if sum(value for _, value in values) >= SHOWN_FROM_SECONDS
        ]
        terminalreporter.section("timings")
        for nodeid, values in shown:
            line = ", ".join(f"{k.removesuffix('_seconds')} {v:.1f} s" for k, v in values)
            terminalreporter.write_line(f"{nodeid}: {line}")
        terminalreporter.write_line(
            f"({len(self.recorded) - len(shown)} more under {SHOWN_FROM_SECONDS} s in all)"
        )

    def _parts(self, terminalreporter: Any) -> None:
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
