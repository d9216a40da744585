"""The compose stacks of the covering set, for real: containers/harness.py per combination.

Each test renders one combination, builds its images from their Dockerfiles, runs
`make up`, the runtime checks, `make train`, `down`/`up` and the project's stack suite in
compose mode (containers/README.md). The engine and the stand-ins are set up by the first
test and reused by the rest. The stacks publish fixed host ports, so the tests take a file
lock and run one at a time, whatever xdist worker they land on; the other worker keeps
running the rest of the suite meanwhile.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from helpers import ROOT

HARNESS = ROOT / "containers" / "harness.py"
LOCK = Path(tempfile.gettempdir()) / "mlops-patterns-containers.lock"


def _covering_set() -> tuple[dict[str, object], ...]:
    spec = importlib.util.spec_from_file_location("containers_harness", HARNESS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: dataclasses look their module up while the class is built.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return tuple(module.COVERING_SET)


COVERING_SET = _covering_set()


def _id(answers: dict[str, object]) -> str:
    return "-".join(
        str(v) if not isinstance(v, bool) else (k if v else f"no_{k}") for k, v in answers.items()
    )


def test_the_covering_set_covers_every_cloud_tier_and_feature_store_answer() -> None:
    from helpers import answer_space

    space = answer_space()
    for question in ("cloud", "team_size", "feature_store"):
        assert {a[question] for a in COVERING_SET} == set(space[question]), question


@pytest.mark.slow
@pytest.mark.containers
@pytest.mark.parametrize("answers", COVERING_SET, ids=[_id(a) for a in COVERING_SET])
def test_compose_stack(answers: dict[str, object], tmp_path: Path, record_property: Any) -> None:
    combination = ",".join(
        f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in answers.items()
    )
    log, work = tmp_path / "harness.log", tmp_path / "work"
    with FileLock(str(LOCK)), log.open("w") as out:
        done = subprocess.run(
            [sys.executable, str(HARNESS), "--combination", combination, "--workdir", str(work)],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    text = log.read_text(errors="replace")
    assert done.returncode == 0, text[-8000:]
    for name, seconds in re.findall(r"^--- (.+): ([0-9.]+) s$", text, re.MULTILINE):
        step = name.split(": ", 1)[-1]
        record_property(re.sub(r"\W+", "_", step).strip("_") + "_seconds", float(seconds))
    summary = re.search(r"^images: .*$", text, re.MULTILINE)
    assert summary is not None, text[-2000:]
    print(summary[0])
    record_property("summary", summary[0])
