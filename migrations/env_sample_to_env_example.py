"""Migration to 0.1.0: `.env.sample` was renamed `.env.example`.

Copier runs this in the project, before it updates the files (`_stage ==
"before"`), when a project moves from a version older than 0.1.0. A plain
re-render cannot express a rename: copier would delete `.env.sample`, edits
included, and add a fresh `.env.example`. Renaming first (in git's index too,
since copier computes the project's own changes from the index) carries the
file over; an edited file then comes out of the update with the project's
lines marked as a conflict in `.env.example`, where nothing is lost.

Idempotent: it does nothing when `.env.sample` is gone, and it never
overwrites an existing `.env.example`. Standard library only, because copier
runs it with its own interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

OLD = Path(".env.sample")
NEW = Path(".env.example")


def git(root: Path, *args: str) -> int:
    """Run git in ``root`` (quietly); return its exit status."""
    # Fixed arguments, no shell: git from PATH, as copier itself runs it.
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)  # noqa: S603, S607
    return done.returncode


def migrate(root: Path) -> str:
    """Rename ``.env.sample`` to ``.env.example`` under ``root``; say what was done."""
    old, new = root / OLD, root / NEW
    if not old.exists():
        return f"{OLD} not found: nothing to migrate"
    if new.exists():
        return f"both {OLD} and {NEW} exist: left as they are, merge them by hand"
    # In git's index too when tracked: copier reads the project's changes from it.
    tracked = git(root, "ls-files", "--error-unmatch", "--", str(OLD)) == 0
    if not tracked:
        old.rename(new)
    elif git(root, "mv", "--", str(OLD), str(NEW)) != 0:
        raise SystemExit(f"migration 0.1.0: `git mv {OLD} {NEW}` failed")
    return f"renamed {OLD} to {NEW}"


if __name__ == "__main__":
    print(f"migration 0.1.0: {migrate(Path.cwd())}", file=sys.stderr)
