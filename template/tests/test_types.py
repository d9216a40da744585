"""The annotations hold: ty checks src/ and tests/ (docs/decisions/0008-type-checking.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def test_ty_finds_no_errors() -> None:
    # The ty of this environment, checking against this environment's packages.
    ty = Path(sys.executable).with_name("ty")
    checked = subprocess.run(
        [str(ty), "check", "--python", sys.executable, "--error-on-warning"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
