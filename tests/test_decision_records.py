"""Every generated repository carries decision records written from its own answers."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from helpers import extension_module, read_answers

if TYPE_CHECKING:
    from pathlib import Path

    from helpers import Combination

RECORDS = (
    "0001-record-architecture-decisions.md",
    "0002-mlflow-tracking-and-registry.md",
    "0003-feature-store.md",
    "0004-serving.md",
    "0005-orchestration-prefect.md",
    "0006-monitoring.md",
    "0007-cloud.md",
    "0008-type-checking.md",
    "0009-dataframe-contract.md",
)
SECTIONS = ("Context", "Decision", "Trade-offs", "Revisit when")
# Markdown links whose target is a relative path (no scheme, no anchor-only link).
RELATIVE_LINK = re.compile(r"\]\((?P<target>(?![a-z][a-z0-9+.-]*:|#)[^)\s]+)\)")


def tiers() -> dict[str, Any]:
    """The tier table of extensions/mlops.py, where the records' tier text comes from."""
    return extension_module().TIERS


def records(project: Path) -> dict[str, str]:
    folder = project / "docs" / "decisions"
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(folder.iterdir())}


def sections(text: str) -> dict[str, str]:
    """The body of every second-level section, by heading."""
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {
        heading.strip(): body.strip()
        for heading, body in zip(parts[1::2], parts[2::2], strict=True)
    }


def test_every_record_is_rendered_with_its_sections(project: Path) -> None:
    rendered = records(project)

    assert tuple(rendered) == RECORDS
    for name, text in rendered.items():
        number = int(name[:4])
        assert re.match(rf"# {number}\. \S", text), f"{name}: starts with '# {number}. <title>'"
        assert "\nStatus: accepted\n" in text, name
        body = sections(text)
        assert tuple(body) == SECTIONS, f"{name}: sections {tuple(body)}"
        assert all(body.values()), f"{name}: an empty section"


def test_records_name_the_answers(project: Path, combination: Combination) -> None:
    rendered = records(project)
    answers = read_answers(project)
    tier = tiers()[answers["team_size"]]
    feature_store = combination["feature_store"]

    index = rendered[RECORDS[0]]
    assert f"| team size | `{tier.key}` |" in index
    assert f"| feature store | {'yes (Feast)' if feature_store else 'no'} |" in index
    assert f"| serving | `{combination['serving']}` |" in index
    assert f"| cloud | `{combination['cloud']}` |" in index
    assert f"| rollout strategy | `{combination['rollout_strategy']}` |" in index

    mlflow = rendered["0002-mlflow-tracking-and-registry.md"]
    gate = (
        f"AUC >= {tier.gate_min_auc}, F1 >= {tier.gate_min_f1}\n"
        f"  and at most {tier.gate_max_regression} AUC below the current champion"
    )
    assert gate in mlflow
    # The registered model is named after the project slug.
    assert f"registered as `{answers['project_slug']}`" in mlflow

    store = rendered["0003-feature-store.md"]
    title = store.splitlines()[0]
    assert title == (
        "# 3. Feast as the feature store"
        if feature_store
        else "# 3. No feature store yet: features computed in code"
    )
    assert ("feature_repo/" in sections(store)["Decision"]) == feature_store
    assert " ".join(tier.feature_store_reason.split()) in " ".join(store.split())
    departs = "departs from that default" in store
    assert departs == (feature_store != tier.feature_store)

    serving = rendered["0004-serving.md"]
    assert f"(the answer `serving: {combination['serving']}`)" in serving
    chose_tier_serving = " ".join(tier.serving_reason.split()) in " ".join(serving.split())
    assert chose_tier_serving == (combination["serving"] == tier.serving)
    # Seldon Core v2's licence is said where the team decides.
    assert ("Business Source License 1.1" in serving) == (combination["serving"] == "seldon")
    assert "ROLLOUT_STRATEGY" in serving
    strategy = combination["rollout_strategy"]
    assert f"This project chose **{strategy}**" in serving
    chose_default = " ".join(tier.rollout_reason.split()) in " ".join(serving.split())
    assert chose_default == (strategy == tier.rollout_strategy)
    assert "5 → 10 → 25 → 50 → 100" in serving
    assert "`rollback`" in serving

    cloud = " ".join(rendered["0007-cloud.md"].split())
    assert f"`cloud: {combination['cloud']}`" in cloud

    monitoring = rendered["0006-monitoring.md"]
    assert f"at least {round(tier.drift_share * 100)} % of the features drift" in monitoring
    assert " ".join(tier.thresholds_reason.split()) in " ".join(monitoring.split())


def test_records_hold_no_other_tiers_text(project: Path) -> None:
    text = " ".join(" ".join(records(project).values()).split())
    key = read_answers(project)["team_size"]

    for other in tiers().values():
        if other.key != key:
            assert " ".join(other.feature_store_reason.split()) not in text
            assert " ".join(other.thresholds_reason.split()) not in text
            assert " ".join(other.rollout_reason.split()) not in text
            if other.serving_reason != tiers()[key].serving_reason:
                assert " ".join(other.serving_reason.split()) not in text


def test_readme_links_every_record_and_every_link_resolves(project: Path) -> None:
    readme = (project / "README.md").read_text(encoding="utf-8")
    linked = [m["target"] for m in RELATIVE_LINK.finditer(readme)]

    assert [t for t in linked if t.startswith("docs/decisions/")] == [
        f"docs/decisions/{name}" for name in RECORDS
    ]
    assert "## Decision records" in readme
    broken = [t for t in linked if not (project / t.split("#")[0]).is_file()]
    for name, text in records(project).items():
        folder = project / "docs" / "decisions"
        targets = [m["target"].split("#")[0] for m in RELATIVE_LINK.finditer(text)]
        broken += [f"{name}: {t}" for t in targets if not (folder / t).is_file()]
    assert broken == []
