"""The README's two commands: present, wired to CI, and the demo run exactly as written."""

from __future__ import annotations

import ast
import shlex
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

from helpers import ROOT, clean_env, copy_working_tree, read_answers, readme_commands, run

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

CI_RUN = ROOT / ".ci" / "run"


def _nox_sessions() -> set[str]:
    """Names of the sessions noxfile.py defines (functions decorated with a nox.session)."""
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any("session" in ast.unparse(decorator) for decorator in node.decorator_list)
    }


def test_readme_gives_the_two_commands() -> None:
    commands = readme_commands()

    assert set(commands) == {"demo", "tests"}
    for name, command in commands.items():
        assert len(command.splitlines()) == 1, f"{name}: one line a newcomer can paste"
        assert f"nox -s {name}" in command


def test_readme_commands_name_real_nox_sessions() -> None:
    sessions = _nox_sessions()

    for command in readme_commands().values():
        words = shlex.split(command)
        named = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "-s"]
        assert named, command
        assert set(named) <= sessions, f"{command}: sessions are {sorted(sessions)}"


def test_ci_runs_the_tests_command_exactly() -> None:
    # The tests command cannot run inside itself; CI runs it, so check CI runs it as written.
    script = CI_RUN.read_text(encoding="utf-8")
    lines = [line.strip() for line in script.splitlines()]
    code = [line for line in lines if line and not line.startswith("#")]

    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in code
    assert code.count(readme_commands()["tests"]) == 1
    assert code[-1] == readme_commands()["tests"], "the tests command decides CI's result"


# What the demo printed before embedded mode was quieted: Prefect's telemetry error,
# its per-task INFO lines, MLflow's schema hint, pip warning and download bars.
NOISE = (
    "Traceback",
    "ERROR",
    "Failed to send telemetry",
    "Finished in state",
    "UserWarning",
    "Failed to resolve installed pip version",
    "Downloading artifacts",
    "database is locked",
)


@pytest.mark.slow
def test_demo_command_as_written(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """A fresh clone and a fresh Python with pip, then the README's demo command verbatim."""
    clone = copy_working_tree(tmp_path / "clone")
    # A new interpreter environment stands in for the newcomer's Python: `pip install`
    # lands there, not in whatever runs these tests.
    newcomer = tmp_path / "python"
    run([sys.executable, "-m", "venv", newcomer], cwd=tmp_path)
    env = clean_env(PATH=f"{newcomer / 'bin'}:{clean_env()['PATH']}")

    started = time.perf_counter()
    done = subprocess.run(
        ["bash", "-c", readme_commands()["demo"]],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    record_property("demo_command_seconds", time.perf_counter() - started)

    output = "\n".join((done.stdout + done.stderr).splitlines()[-200:])
    assert done.returncode == 0, output
    demo = clone / "build" / "demo"
    assert read_answers(demo)["project_slug"] == "churn-model"
    # Embedded mode is quiet unless something is wrong: nothing a newcomer would
    # read as a failure (nox prints the command, then the demo's stderr follows).
    demo_stderr = done.stderr.rsplit("churn-model demo", 1)[-1]
    for noise in NOISE:
        assert noise not in done.stdout + demo_stderr, (noise, output)
