"""Three costs of a copier render that the template's tests need not pay.

A test run renders all 216 combinations (about 1.5 CPU-s each). Three parts of
that repeat work whose result the run already has:

- copier clones the template repository at the requested ref into a new
  temporary directory for every render (a third of a second of git). A clean
  repository at one commit clones to the same tree each time, so the first
  clone of a (repository, commit) is kept for the process and handed out again;
  copier only reads it. A repository with uncommitted changes is cloned as usual.

- Jinja compiles every template file and every templated path and string again
  for each render, although their sources are the same in all of them. Compiled
  code is kept here by source and by everything about the environment that
  changes how a source compiles (syntax, extensions, whitespace handling).
- For every file it writes, copier asks git whether the destination is a work
  tree whose index must learn an executable bit. A render made for the tests
  goes to a fresh directory outside any repository, where the answer is always
  no. The question is skipped inside `fast_renders()` only; updates, which run
  in repositories, still ask it.

``tests/test_render.py`` checks that a render made this way equals, file by
file and mode by mode, one made without it.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import copier._main as copier_main
import copier._template as copier_template
from jinja2 import Environment

if TYPE_CHECKING:
    from collections.abc import Iterator

_COMPILED: dict[tuple[Any, ...], Any] = {}
_compile = Environment.compile
_CLONES: dict[tuple[str, str], str] = {}
_clone = copier_template.clone


def _git(url: str, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", url, *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _cached_clone(url: str, ref: str = "HEAD", location: str | None = None) -> str:
    """The process's clone of a clean local repository at ``ref``'s commit."""
    if not Path(url).is_dir() or _git(url, "status", "--porcelain"):
        return _clone(url, ref, location)
    key = (url, _git(url, "rev-parse", "--verify", f"{ref}^{{commit}}"))
    if key not in _CLONES:
        kept = tempfile.mkdtemp(prefix="fast-render-clone-")
        atexit.register(shutil.rmtree, kept, ignore_errors=True)
        _CLONES[key] = _clone(url, key[1], kept)
    # copier removes the empty `location` it made when the render ends.
    return _CLONES[key]


def _environment_key(environment: Environment) -> tuple[Any, ...]:
    """What about an environment changes the code a source compiles to."""
    return (
        type(environment),
        tuple(sorted(environment.extensions)),
        environment.block_start_string,
        environment.block_end_string,
        environment.variable_start_string,
        environment.variable_end_string,
        environment.comment_start_string,
        environment.comment_end_string,
        environment.line_statement_prefix,
        environment.line_comment_prefix,
        environment.trim_blocks,
        environment.lstrip_blocks,
        environment.newline_sequence,
        environment.keep_trailing_newline,
        environment.optimized,
        environment.undefined,
        environment.autoescape if not callable(environment.autoescape) else None,
        tuple(sorted(environment.filters)),
        tuple(sorted(environment.tests)),
    )


def _cached_compile(
    self: Environment,
    source: Any,
    name: str | None = None,
    filename: str | None = None,
    raw: bool = False,
    defer_init: bool = False,
) -> Any:
    if not isinstance(source, str):  # an AST: compiled as it comes
        return _compile(self, source, name, filename, raw, defer_init)
    key = (source, name, filename, raw, defer_init, _environment_key(self))
    if key not in _COMPILED:
        _COMPILED[key] = _compile(self, source, name, filename, raw, defer_init)
    return _COMPILED[key]


def _no_index_sync(*_args: object, **_kwargs: object) -> None:
    return None


@contextmanager
def fast_renders() -> Iterator[None]:
    """Inside the block, renders reuse clones and compiled templates and skip the git
    index question."""
    sync = copier_main.Worker._sync_git_index_executable_bit
    Environment.compile = _cached_compile  # type: ignore[method-assign]
    copier_main.Worker._sync_git_index_executable_bit = _no_index_sync  # type: ignore[method-assign]
    copier_template.clone = _cached_clone
    try:
        yield
    finally:
        Environment.compile = _compile  # type: ignore[method-assign]
        copier_main.Worker._sync_git_index_executable_bit = sync  # type: ignore[method-assign]
        copier_template.clone = _clone
