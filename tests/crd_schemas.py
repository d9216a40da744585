"""Validating custom resources (KServe, Seldon Core v2) against their published CRDs.

A CustomResourceDefinition carries the resource's JSON schema (the
``openAPIV3Schema`` of each version), so a manifest can be checked without a
cluster. The CRDs are upstream data kept next to this repository, in
``../shared/crds`` (its README names the commits), and read from there when the
tests run: nothing is copied in. ``MLOPS_CRDS_DIR`` points elsewhere. A missing
directory fails the test that needs it, saying where it looked; it never skips.

The schemas alone accept a misspelt field: a cluster prunes unknown fields
silently, so ``canaryTraficPercent`` would vanish without an error. `strict`
closes every object schema that lists its properties (``additionalProperties:
false``), except where the CRD itself keeps unknown fields
(``x-kubernetes-preserve-unknown-fields``) or says what extra keys hold.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from helpers import ROOT, extension_module

CRDS_ENV = "MLOPS_CRDS_DIR"


def crds_dir() -> Path:
    """Where the upstream CRDs are: $MLOPS_CRDS_DIR, else ../shared/crds beside the clone.

    A clone one folder deeper (a CI workspace inside the same tree) finds the nearest
    ``shared/crds`` above it; with none, the path beside the clone is the one named.
    """
    configured = os.environ.get(CRDS_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    beside = ROOT.parent / "shared" / "crds"
    found = (folder / "shared" / "crds" for folder in ROOT.parents)
    return next((path for path in found if path.is_dir()), beside)


def strict(schema: Any) -> Any:
    """``schema`` with every object that lists its properties closed to other keys."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in closed
        and "additionalProperties" not in closed
        and not closed.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


@functools.cache
def schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the version's openAPIV3Schema, for every CRD under `crds_dir`."""
    root = crds_dir()
    if not root.is_dir():
        pytest.fail(
            f"no CRDs at {root}: the KServe and Seldon manifests are validated against the "
            f"upstream CRDs there (../shared/crds next to the clone, see its README); "
            f"set {CRDS_ENV} to another directory that holds them"
        )
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(root.rglob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                found[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    if not found:
        pytest.fail(f"{root} holds no CustomResourceDefinition (*.yaml)")
    return found


def custom_groups() -> set[str]:
    """The API groups of the custom resources the rendered manifests may hold."""
    servings = extension_module().SERVINGS.values()
    return {serving.api_version.split("/")[0] for serving in servings if serving.api_version}


def is_custom(document: dict[str, Any]) -> bool:
    return str(document.get("apiVersion", "")).split("/")[0] in custom_groups()


@functools.cache
def _validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    known = schemas()
    if (api_version, kind) not in known:
        pytest.fail(f"{crds_dir()} has no CRD for {kind} in {api_version}")
    schema = known[(api_version, kind)]
    # metadata is the API server's to check (ObjectMeta), not the CRD's: its schema
    # there is a bare object. Everything else is checked strictly.
    properties = {
        name: (value if name == "metadata" else strict(value))
        for name, value in schema["properties"].items()
    }
    return jsonschema.Draft7Validator({**schema, "properties": properties})


def errors(document: dict[str, Any]) -> list[str]:
    """What is wrong with a custom resource, one line per problem (empty: valid)."""
    validator = _validator(document["apiVersion"], document["kind"])
    return sorted(
        f"{'/'.join(map(str, error.absolute_path)) or '(document)'}: {error.message}"
        for error in validator.iter_errors(document)
    )
