"""The KServe and Seldon Core v2 resources of rendered projects (serving: kserve, seldon).

Every custom resource of every combination that renders one validates against
the upstream CRD (tests/crd_schemas.py: strict, so a misspelt field fails rather
than being pruned by the cluster); test_deploy_files.py runs that check, with
kubernetes-validate on the core kinds, over every document a release holds.
Here: what the resources must say beyond their schema. The predictor is the
registered MLflow model on the V2 protocol; the transformer is the project's
enrichment step; the rollout answer decides ``canaryTrafficPercent``, the shadow
InferenceService and the Seldon Experiment; and release.env, which `promote`
writes, decides which versions serve and which model resources a release holds
at all.

Renders come from the session (``project``); deploy/render.sh runs on a copy,
once per distinct deploy/ tree and release.env for this worker.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import crd_schemas
from helpers import extension_module, read_answers, rolls_out, serves_with, where
from test_deploy_files import (
    CHALLENGER_ID,
    CHALLENGER_VERSION,
    CHAMPION_ID,
    CHAMPION_VERSION,
    SERVICE_IMAGE,
    by_kind,
    deployment,
    model_uri,
    release_values,
    render_manifests,
    tree_digest,
)

CANARY_STEPS = (5, 10, 25, 50, 100)


def answers(project: Path) -> dict[str, Any]:
    return read_answers(project)


# (deploy/ tree hash, release.env) -> the run of deploy/render.sh, for this worker's session.
_RENDERS: dict[tuple[str, str], Any] = {}


def render(project: Path, workdir: Path, release: dict[str, str] | None = None) -> Any:
    """deploy/render.sh with release.env as given (default: as `promote` fills it)."""
    release = release_values(project) if release is None else release
    key = (tree_digest(project / "deploy"), repr(sorted(release.items())))
    if key not in _RENDERS:
        slug = answers(project)["project_slug"]
        images = (SERVICE_IMAGE.format(slug=slug), f"registry.example.com/team/{slug}:jobs-1")
        _RENDERS[key] = render_manifests(project, workdir, *images, release=release)
    return _RENDERS[key]


def documents(project: Path, workdir: Path, release: dict[str, str] | None = None) -> list[Any]:
    done = render(project, workdir, release)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def serving(project: Path) -> str:
    return str(answers(project)["serving"])


# ---------------------------------------------------------------------------
# The CRDs and the strict check
# ---------------------------------------------------------------------------


def test_crds_hold_every_kind_the_manifests_use() -> None:
    known = crd_schemas.schemas()
    for choice in extension_module().SERVINGS.values():
        for kind in choice.kinds:
            assert (choice.api_version, kind) in known, (choice.key, kind)


def _valid_inference_service() -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "churn-model"},
        "spec": {
            "predictor": {
                "canaryTrafficPercent": 5,
                "model": {
                    "modelFormat": {"name": "mlflow"},
                    "protocolVersion": "v2",
                    "storageUri": "s3://bucket/1/models/m-1/artifacts",
                },
            }
        },
    }


@pytest.mark.parametrize(
    ("path", "field", "typo"),
    [
        (("spec", "predictor"), "canaryTrafficPercent", "canaryTraficPercent"),
        (("spec", "predictor", "model"), "storageUri", "storageURI"),
        (("spec", "predictor", "model"), "protocolVersion", "protocolVerison"),
    ],
)
def test_a_misspelt_field_fails_the_strict_check(
    path: tuple[str, ...], field: str, typo: str
) -> None:
    valid = _valid_inference_service()
    assert crd_schemas.errors(valid) == []

    broken = copy.deepcopy(valid)
    parent = broken
    for part in path:
        parent = parent[part]
    parent[typo] = parent.pop(field)

    assert any(typo in problem for problem in crd_schemas.errors(broken)), typo
    # The CRD's schema as published lets it through: a cluster would drop the field.
    published = crd_schemas.schemas()[("serving.kserve.io/v1beta1", "InferenceService")]
    assert list(jsonschema.Draft7Validator(published).iter_errors(broken)) == []


def test_seldon_resources_are_checked_strictly_too() -> None:
    experiment = {
        "apiVersion": "mlops.seldon.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "churn-model"},
        "spec": {
            "default": "churn-model-champion",
            "candidates": [{"name": "churn-model-champion", "weight": 100}],
            "mirror": {"name": "churn-model-challenger", "percent": 100},
        },
    }
    assert crd_schemas.errors(experiment) == []
    experiment["spec"]["mirrors"] = experiment["spec"].pop("mirror")
    assert any("mirrors" in problem for problem in crd_schemas.errors(experiment))
    model = {
        "apiVersion": "mlops.seldon.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "churn-model-champion"},
        "spec": {"storageUri": "s3://bucket/1/models/m-1/artifacts", "requirements": "mlflow"},
    }
    # requirements is a list: the type is checked as well as the names.
    assert any("requirements" in problem for problem in crd_schemas.errors(model))


# ---------------------------------------------------------------------------
# KServe
# ---------------------------------------------------------------------------


def test_only_the_chosen_serving_ships_its_resources(project: Path) -> None:
    k8s = project / "deploy" / "k8s"
    chosen = serving(project)
    assert (k8s / "inferenceservice.yaml").exists() is (chosen == "kserve")
    assert (k8s / "seldon.yaml").exists() is (chosen == "seldon")
    # The model versions a release serves, for the platforms that pull the model.
    assert (k8s / "release.env").exists() is (chosen != "bentoml")


@where(serves_with("kserve"))
def test_inference_service_serves_the_registered_model_on_v2(project: Path, tmp_path: Path) -> None:
    slug, rollout = answers(project)["project_slug"], answers(project)["rollout_strategy"]
    services = by_kind(documents(project, tmp_path), "InferenceService")
    release = release_values(project)

    assert set(services) == ({slug, f"{slug}-shadow"} if rollout == "shadow" else {slug})
    champion = services[slug]["spec"]
    predictor = champion["predictor"]
    assert predictor["serviceAccountName"] == f"{slug}-service"
    assert predictor["model"]["modelFormat"] == {"name": "mlflow"}
    assert predictor["model"]["protocolVersion"] == "v2"
    assert (
        predictor["model"]["storageUri"] == release["MODEL_URI"] == model_uri(project, CHAMPION_ID)
    )
    assert predictor["model"]["securityContext"]["runAsNonRoot"] is True
    # The registry's version, which MLServer reports in every V2 answer (the stock
    # MLflow runtime has none of its own); each revision carries its own.
    assert predictor["model"]["env"] == [
        {"name": "MLSERVER_MODEL_VERSION", "value": release["MODEL_VERSION"]}
    ]
    assert release["MODEL_VERSION"] == CHAMPION_VERSION

    # The enrichment step: the service image, with the arguments KServe would add.
    (container,) = champion["transformer"]["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"] == SERVICE_IMAGE.format(slug=slug)
    arguments = container["args"]
    assert arguments[:7] == [
        "transformer",
        "--model_name",
        slug,
        "--predictor_host",
        f"{slug}-predictor.{slug}",
        "--http_port",
        "8080",
    ]
    assert champion["transformer"]["serviceAccountName"] == f"{slug}-service"
    # The shadow: its predictor's host, and its model's name on the V2 path (KServe's
    # MLflow runtime names the model after the InferenceService).
    shadow = dict(zip(arguments[7::2], arguments[8::2], strict=True))
    if rollout == "shadow":
        assert shadow == {
            "--shadow_host": f"{slug}-shadow-predictor.{slug}",
            "--shadow_model_name": f"{slug}-shadow",
        }
        assert f"{slug}-shadow" in services
    else:
        assert shadow == {}


@where(serves_with("kserve"))
def test_canary_traffic_percent_exactly_for_canary(project: Path, tmp_path: Path) -> None:
    slug, rollout = answers(project)["project_slug"], answers(project)["rollout_strategy"]
    services = by_kind(documents(project, tmp_path), "InferenceService")

    with_percent = {
        name: spec["spec"]["predictor"]["canaryTrafficPercent"]
        for name, spec in services.items()
        if "canaryTrafficPercent" in spec["spec"]["predictor"]
    }
    # A canary starts at 5 % (release.env as rendered), and nothing else splits.
    assert with_percent == ({slug: 5} if rollout == "canary" else {})
    committed = (project / "deploy" / "k8s" / "release.env").read_text(encoding="utf-8")
    assert ("\nCANARY_PERCENT=5\n" in committed) == (rollout == "canary")
    assert not any(
        "canaryTrafficPercent" in spec["spec"].get("transformer", {}) for spec in services.values()
    )

    if rollout == "canary":
        # Each step is one value in release.env; a share beyond 100 is refused.
        for percent in CANARY_STEPS:
            step = release_values(project) | {"CANARY_PERCENT": str(percent)}
            stepped = by_kind(documents(project, tmp_path / str(percent), step), "InferenceService")
            assert stepped[slug]["spec"]["predictor"]["canaryTrafficPercent"] == percent
        refused = render(
            project, tmp_path / "over", release_values(project) | {"CANARY_PERCENT": "150"}
        )
        assert refused.returncode == 1
        assert "CANARY_PERCENT" in refused.stderr


@where(serves_with("kserve"), rolls_out("shadow"))
def test_kserve_shadow_is_a_cluster_local_inference_service(project: Path, tmp_path: Path) -> None:
    slug = answers(project)["project_slug"]
    shadow = by_kind(documents(project, tmp_path), "InferenceService")[f"{slug}-shadow"]

    assert shadow["metadata"]["labels"]["networking.kserve.io/visibility"] == "cluster-local"
    # A predictor only: requests reach it as copies from the champion's transformer.
    assert set(shadow["spec"]) == {"predictor"}
    model = shadow["spec"]["predictor"]["model"]
    assert model["storageUri"] == model_uri(project, CHALLENGER_ID)
    assert model["env"] == [{"name": "MLSERVER_MODEL_VERSION", "value": CHALLENGER_VERSION}]
    assert (model["modelFormat"], model["protocolVersion"]) == ({"name": "mlflow"}, "v2")


# ---------------------------------------------------------------------------
# Seldon Core v2
# ---------------------------------------------------------------------------


@where(serves_with("seldon"))
def test_seldon_models_and_experiment_follow_the_rollout(project: Path, tmp_path: Path) -> None:
    slug, rollout = answers(project)["project_slug"], answers(project)["rollout_strategy"]
    docs = documents(project, tmp_path)
    models, experiments = by_kind(docs, "Model"), by_kind(docs, "Experiment")
    champion, challenger = f"{slug}-champion", f"{slug}-challenger"

    uris = {name: model["spec"]["storageUri"] for name, model in models.items()}
    if rollout == "blue-green":
        assert uris == {champion: model_uri(project, CHAMPION_ID)}
        assert experiments == {}
    else:
        assert uris == {
            champion: model_uri(project, CHAMPION_ID),
            challenger: model_uri(project, CHALLENGER_ID),
        }
        spec = experiments[slug]["spec"]
        assert spec["default"] == champion
        if rollout == "canary":
            assert spec["candidates"] == [
                {"name": champion, "weight": 95},
                {"name": challenger, "weight": 5},
            ]
            assert "mirror" not in spec
        else:
            assert spec["candidates"] == [{"name": champion, "weight": 100}]
            assert spec["mirror"] == {"name": challenger, "percent": 100}
    for model in models.values():
        assert model["spec"]["requirements"] == ["mlflow"]

    # The enrichment step in front of Seldon asks the mesh for the champion's name,
    # which the Experiment (if any) takes over.
    (container,) = deployment(docs, slug, "service")["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [
        "transformer",
        "--model_name",
        champion,
        "--predictor_host",
        f"seldon-mesh.{slug}",
        "--http_port",
        "8080",
    ]


@where(serves_with("seldon"), rolls_out("canary"))
def test_seldon_canary_weights_move_and_must_add_up(project: Path, tmp_path: Path) -> None:
    slug = answers(project)["project_slug"]
    for percent in CANARY_STEPS:
        step = release_values(project) | {
            "CHAMPION_WEIGHT": str(100 - percent),
            "CHALLENGER_WEIGHT": str(percent),
        }
        experiment = by_kind(documents(project, tmp_path / str(percent), step), "Experiment")[slug]
        weights = {c["name"]: c["weight"] for c in experiment["spec"]["candidates"]}
        assert weights == {f"{slug}-champion": 100 - percent, f"{slug}-challenger": percent}

    uneven = render(
        project, tmp_path / "uneven", release_values(project) | {"CHALLENGER_WEIGHT": "10"}
    )
    assert uneven.returncode == 1
    assert "add up to 100" in uneven.stderr


def test_the_licence_is_stated_where_the_team_decides(project: Path) -> None:
    texts = {
        name: (project / name).read_text(encoding="utf-8")
        for name in ("deploy/README.md", "docs/decisions/0004-serving.md")
        if (project / name).exists()
    }
    if serving(project) == "seldon":
        assert set(texts) == {"deploy/README.md", "docs/decisions/0004-serving.md"}
        for name, text in texts.items():
            flat = " ".join(text.split())
            assert "Business Source License 1.1" in flat, name
            assert "production use needs a commercial licence from Seldon" in flat, name
    else:
        assert not any("Business Source License" in text for text in texts.values())


# ---------------------------------------------------------------------------
# release.env: which versions serve
# ---------------------------------------------------------------------------


@where(serves_with("kserve", "seldon"))
def test_release_env_decides_which_model_resources_ship(project: Path, tmp_path: Path) -> None:
    slug = answers(project)["project_slug"]
    choice = extension_module().SERVINGS[serving(project)]
    lines = extension_module().release_values(
        serving(project), answers(project)["rollout_strategy"], slug
    )
    committed = (project / "deploy" / "k8s" / "release.env").read_text(encoding="utf-8")
    assert [
        line.split("=")[0]
        for line in committed.splitlines()
        if "=" in line and not line.startswith("#")
    ] == [line.key for line in lines]

    # As committed (no champion yet): the tracking server ships, no model resource does.
    empty = {line.key: line.default for line in lines}
    before = render(project, tmp_path / "empty", empty)
    assert before.returncode == 0, before.stderr
    shipped = [doc for doc in yaml.safe_load_all(before.stdout) if doc]
    assert [d["kind"] for d in shipped if crd_schemas.is_custom(d)] == []
    assert f"{slug}-mlflow" in by_kind(shipped, "Deployment")
    for line in lines:
        for kind, name in line.needed_by:
            assert f"{kind}/{name}" in before.stderr

    # A URI that is not the platform's store for this cloud is refused, naming the key.
    (uri_key, *_) = [line.key for line in lines if line.check == "uri"]
    wrong = release_values(project) | {uri_key: "file:///tmp/model"}
    refused = render(project, tmp_path / "wrong", wrong)
    assert refused.returncode == 1
    assert uri_key in refused.stderr
    # ... and a version that is not a registry version number.
    for line in lines:
        if line.check == "version":
            named = release_values(project) | {line.key: "latest"}
            refused = render(project, tmp_path / line.key, named)
            assert refused.returncode == 1
            assert line.key in refused.stderr
    # Filled in, the release holds the operator's resources (an Experiment only to
    # split or mirror traffic).
    kinds = {d["kind"] for d in documents(project, tmp_path / "full") if crd_schemas.is_custom(d)}
    experiment = (
        serving(project) == "seldon" and answers(project)["rollout_strategy"] != "blue-green"
    )
    assert kinds == set(choice.kinds) - ({"Experiment"} if not experiment else set())
