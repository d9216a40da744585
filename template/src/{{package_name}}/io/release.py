"""The release file: which model versions a Kubernetes release serves (KServe, Seldon).

On KServe or Seldon Core, the model resources of the release serve, not the
registry's aliases. A file of ``KEY=value`` lines holds their variable part
(kustomize copies each value into its resource), and `promote`, `rollback`
and `rollout` rewrite it after they change the registry: a commit of the file
then releases what the registry says. Each key the file holds gets the value
the registry state calls for; comments, blank lines and other keys stay as
they are. Without the file (the BentoML service follows the registry by
itself) nothing is written.

The keys, for either platform:

* KServe: ``MODEL_URI`` and ``MODEL_VERSION``, what the latest predictor
  revision serves (the champion, or a canary's challenger); ``CANARY_PERCENT``,
  that revision's share; ``SHADOW_MODEL_URI`` and ``SHADOW_MODEL_VERSION``, the
  challenger of the shadow InferenceService (empty: no shadow).
* Seldon: ``CHAMPION_URI``; ``CHALLENGER_URI`` (empty: no rollout);
  ``CHAMPION_WEIGHT`` and ``CHALLENGER_WEIGHT``, the canary's split (100/0 without one).

A layout rendered for one rollout strategy cannot run every other: a file that
mirrors (a shadow InferenceService, or a challenger without weights) keeps
mirroring the challenger during a canary, and a file with neither leaves the
champion alone. `Update.notes` says so.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from . import registry

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from mlflow import MlflowClient

    from ..config import Settings

_ASSIGNMENT = re.compile(r"^(?P<key>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")
# The URI scheme of a tracking server that proxies artifacts (mlflow server --serve-artifacts).
PROXIED_SCHEME = "mlflow-artifacts"


class ReleaseError(Exception):
    """The release file cannot follow the registry; the message says what to fix."""


@dataclass(frozen=True)
class Change:
    key: str
    before: str
    after: str


@dataclass(frozen=True)
class Update:
    """What `follow` wrote: the changed lines, and what the file's layout cannot do."""

    path: Path
    changes: tuple[Change, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class ReleaseFile:
    path: Path
    text: str

    @property
    def values(self) -> dict[str, str]:
        """Each key's value; a repeated key's last one, as the tools that read the file take it."""
        found = {}
        for line in self.text.splitlines():
            match = _ASSIGNMENT.match(line)
            if match:
                found[match["key"]] = match["value"]
        return found

    def replaced(self, values: Mapping[str, str]) -> str:
        """The text with these keys' values replaced, every other line as it was."""
        lines = []
        for line in self.text.splitlines(keepends=True):
            body = line.rstrip("\r\n")
            match = _ASSIGNMENT.match(body)
            if match and match["key"] in values:
                line = f"{match['key']}={values[match['key']]}{line[len(body) :]}"
            lines.append(line)
        return "".join(lines)


def plan(
    state: registry.ServingState, current: Mapping[str, str], *, halted_canary: str | None = None
) -> tuple[dict[str, str | None], dict[str, str], list[str]]:
    """What the file, holding `current`, should say for `state`: versions, shares, notes.

    Versions map a ``*_URI`` or ``*_VERSION`` key to a registry version (None:
    empty). `halted_canary` is the challenger of a canary `rollback` just ended:
    while the file still runs it on KServe, a share of 0 stops it at once (every
    request goes back to the previous revision, the champion's) and the latest
    revision stays as named.
    """
    keys = set(current)
    rollout = state.active_rollout
    canary = rollout is not None and rollout.mode == "canary"
    challenger = rollout.challenger if rollout is not None else None
    versions: dict[str, str | None] = {}
    shares: dict[str, str] = {}
    notes: list[str] = []
    if "MODEL_URI" in keys:
        splits, mirrors = "CANARY_PERCENT" in keys, "SHADOW_MODEL_URI" in keys
        # Only a canary the file still runs (its version, at a share below 100) stops so.
        running = (
            halted_canary is not None
            and current.get("MODEL_VERSION") == halted_canary
            and current.get("CANARY_PERCENT") != "100"
        )
        if splits and running:
            shares["CANARY_PERCENT"] = "0"
        else:
            latest = challenger if canary and splits else state.champion
            versions |= {"MODEL_URI": latest, "MODEL_VERSION": latest}
            if splits:
                shares["CANARY_PERCENT"] = str(rollout.percent if canary and rollout else 100)
        shadowed = challenger if mirrors else None
        versions |= {"SHADOW_MODEL_URI": shadowed, "SHADOW_MODEL_VERSION": shadowed}
        notes += _layout_notes(rollout, splits, mirrors)
    if "CHAMPION_URI" in keys:
        splits = "CHALLENGER_WEIGHT" in keys
        mirrors = "CHALLENGER_URI" in keys and not splits
        versions["CHAMPION_URI"] = state.champion
        versions["CHALLENGER_URI"] = challenger if (canary and splits) or mirrors else None
        if splits:
            share = rollout.percent if canary and rollout else 0
            shares |= {"CHAMPION_WEIGHT": str(100 - share), "CHALLENGER_WEIGHT": str(share)}
        notes += _layout_notes(rollout, splits, mirrors)
    present = {k: v for k, v in versions.items() if k in keys}
    return present, {k: v for k, v in shares.items() if k in keys}, notes


def _layout_notes(rollout: registry.Rollout | None, splits: bool, mirrors: bool) -> list[str]:
    if rollout is None:
        return []
    if rollout.mode == "canary" and not splits:
        if mirrors:
            return ["this release cannot split traffic: the challenger scores copies instead"]
        return ["this release cannot split traffic: the champion keeps every request"]
    if rollout.mode == "shadow" and not mirrors:
        return ["this release cannot copy requests: the challenger is not deployed"]
    return []


def artifacts_uri(client: MlflowClient, settings: Settings, version: str) -> str:
    """Where `version`'s artifacts (the directory with MLmodel) are, as the platform reads them."""
    location = client.get_model_version_download_uri(settings.model_name, version)
    parts = urlsplit(location)
    if parts.scheme != PROXIED_SCHEME:
        return location
    if not settings.release_store:
        setting = f"{settings.model_config.get('env_prefix', '')}RELEASE_STORE"
        raise ReleaseError(
            f"the tracking server proxies the artifacts ({location}): set {setting} to "
            "its artifacts destination as the serving platform reads it, e.g. s3://<bucket>"
        )
    return f"{settings.release_store.rstrip('/')}/{parts.path.lstrip('/')}"


def open_release(client: MlflowClient, settings: Settings) -> ReleaseFile | None:
    """The release file, checked before a command changes the registry; None without one.

    Fails while the file could not be written afterwards: unwritable, or a
    version's artifacts that cannot be named (see `artifacts_uri`).
    """
    path = settings.release_file
    try:
        release = ReleaseFile(path, path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ReleaseError(f"cannot read {path}: {error.strerror}") from None
    if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        raise ReleaseError(f"cannot write {path} (or its directory)")
    if any(key.endswith("_URI") for key in release.values):
        state = registry.serving_state(client, settings)
        # Every version lives on the same store: one that can be named shows they all can.
        known = state.champion or state.challenger
        if known is not None:
            artifacts_uri(client, settings, known)
    return release


def follow(
    client: MlflowClient,
    settings: Settings,
    release: ReleaseFile,
    *,
    halted_canary: str | None = None,
) -> Update:
    """Rewrite `release` (atomically) as the registry's state now calls for; see `plan`."""
    current = ReleaseFile(release.path, release.path.read_text(encoding="utf-8"))
    before = current.values
    versions, shares, notes = plan(
        registry.serving_state(client, settings), before, halted_canary=halted_canary
    )
    uris: dict[str, str] = {}
    wanted = dict(shares)
    for key, version in versions.items():
        if version is None:
            wanted[key] = ""
        elif key.endswith("_URI"):
            if version not in uris:
                uris[version] = artifacts_uri(client, settings, version)
            wanted[key] = uris[version]
        else:
            wanted[key] = version
    changes = tuple(
        Change(key, before[key], value) for key, value in wanted.items() if before[key] != value
    )
    if changes:
        _replace(current.path, current.replaced(wanted))
    return Update(current.path, changes, tuple(notes))


def _replace(path: Path, text: str) -> None:
    """Write `path` so that a reader sees the old file or the new one, never half of one."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
