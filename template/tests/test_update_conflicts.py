"""No conflict a `copier update` left behind goes unnoticed.

`copier update` exits 0 even when it could not merge a change of the template with
one of yours: it writes both sides into the file between conflict markers (or, with
`--conflict rej`, puts the rejected hunk in a `.rej` file beside it). This test
fails naming every such file, in `uv run pytest` and so in CI.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
# Built, not written out, so this file does not match itself.
MARKERS = re.compile("^(" + "<" * 7 + "|" + ">" * 7 + ") ", re.MULTILINE)
# Never the project's own files: environments, caches and embedded-mode state.
SKIPPED = {".git", ".venv", ".mlops", "node_modules", "__pycache__"}


def project_files() -> list[Path]:
    """Tracked and untracked files git does not ignore; every file outside SKIPPED
    when the project is not a git checkout (an unpacked archive, say)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=PROJECT,
            capture_output=True,
            check=False,
        )
    except FileNotFoundError:  # no git on this machine
        listed = None
    if listed is not None and listed.returncode == 0:
        # An unmerged file is listed once per stage: each name once.
        names = dict.fromkeys(filter(None, listed.stdout.decode().split("\0")))
        return [PROJECT / name for name in names if (PROJECT / name).is_file()]
    return [
        path
        for path in PROJECT.rglob("*")
        if path.is_file() and not SKIPPED & set(path.relative_to(PROJECT).parts)
    ]


def test_no_update_conflict_is_left() -> None:
    files = project_files()
    rejects = [path for path in files if path.suffix == ".rej"]
    marked = []
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        if {match[1] for match in MARKERS.finditer(text)} == {"<" * 7, ">" * 7}:
            marked.append(path)
    left = sorted(path.relative_to(PROJECT).as_posix() for path in rejects + marked)
    assert not left, (
        "`copier update` left conflicts: resolve them (keep what you want from both "
        "sides, drop the markers, delete the .rej files), then commit: " + ", ".join(left)
    )
