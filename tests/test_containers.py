"""The compose stacks of the covering set, for real: one containers/harness.py run.

For each combination the harness renders the project, builds its images from their
Dockerfiles, runs `make up`, the runtime checks, `make train`, `down`/`up` and the
project's stack suite in compose mode against that stack (containers/README.md). One test
item runs them all, so the engine and the stand-ins are set up once and no xdist worker
waits on another. The stacks publish fixed host ports: a file lock keeps two runs (another
pytest, `nox -s containers`) from overlapping.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from helpers import ROOT, module_from_path

HARNESS = ROOT / "containers" / "harness.py"
LOCK = Path(tempfile.gettempdir()) / "mlops-patterns-containers.lock"


COVERING_SET: tuple[dict[str, object], ...] = tuple(
    module_from_path("containers_harness", HARNESS).COVERING_SET
)


def test_the_covering_set_covers_every_cloud_tier_and_feature_store_answer() -> None:
    from helpers import answer_space

    space = answer_space()
    for question in ("cloud", "team_size", "feature_store"):
        assert {a[question] for a in COVERING_SET} == set(space[question]), question


@pytest.mark.slow
@pytest.mark.containers
def test_compose_stacks(tmp_path: Path, record_property: Any) -> None:
    combinations = [
        "--combination="
        + ",".join(
            f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in answers.items()
        )
        for answers in COVERING_SET
    ]
    log, work = tmp_path / "harness.log", tmp_path / "work"
    with FileLock(str(LOCK)), log.open("w") as out:
        done = subprocess.run(
            [sys.executable, str(HARNESS), *combinations, "--workdir", str(work)],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    text = log.read_text(errors="replace")
    for name, seconds in re.findall(r"^--- (.+): ([0-9.]+) s$", text, re.MULTILINE):
        record_property(re.sub(r"\W+", "_", name).strip("_") + "_seconds", float(seconds))
    # One line per combination (passed or why not), then the images' sizes.
    lines = re.findall(r"^(?:combination .*|images: .*)$", text, re.MULTILINE)
    print("\n".join(lines))
    for line in lines:  # the timing plugin prints each at the end of the run
        record_property("summary", line)
    assert len([line for line in lines if line.startswith("combination ")]) == len(COVERING_SET)
    assert done.returncode == 0, text[-8000:]
    assert lines[-1].startswith("images: "), text[-2000:]
