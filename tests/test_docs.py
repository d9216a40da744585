"""The documentation site builds strictly, and shows what the template really does."""

from __future__ import annotations

import re
import shutil
import time
from typing import TYPE_CHECKING, Any

import pytest

from helpers import ROOT, clean_env, extension_module, run, tool

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable
    from pathlib import Path

DOCS = ROOT / "docs"
# Files outside docs/ that pages include whole (`--8<-- "path"`).
SNIPPETS = sorted(
    {
        m
        for page in DOCS.rglob("*.md")
        for m in re.findall(r'^--8<-- "([^"]+)"', page.read_text(encoding="utf-8"), re.M)
    }
)


def build(project_root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """`mkdocs build --strict` of the site configured in project_root/mkdocs.yml."""
    return run(
        [tool("mkdocs"), "build", "--strict", "--site-dir", site],
        cwd=project_root,
        # Material's notice about its successor would print on every build.
        env=clean_env(NO_MKDOCS_2_WARNING="1"),
        check=False,
    )


def test_site_builds_strictly(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    started = time.perf_counter()
    done = build(ROOT, tmp_path / "site")
    record_property("docs_build_seconds", time.perf_counter() - started)

    assert done.returncode == 0, done.stdout + done.stderr
    for page in ("index", "questions", "architecture", "operating", "upgrading", "org-defaults"):
        assert (tmp_path / "site" / ("" if page == "index" else page) / "index.html").is_file()


# Mistakes the strict build must catch: a page outside the nav, a broken link, a broken anchor.
MISTAKES = {
    "orphan page": ("orphan.md", "# Orphan\n", "orphan.md"),
    "broken link": ("operating.md", "\nSee [nowhere](no-such-page.md).\n", "no-such-page.md"),
    "broken anchor": (
        "index.md",
        "\nSee [tiers](questions.md#no-such-section).\n",
        "no-such-section",
    ),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_strict_build_fails_on(tmp_path: Path, mistake: str) -> None:
    # The check above is only worth something if a mistake fails the build.
    page, appended, reported = MISTAKES[mistake]
    copy = tmp_path / "repo"
    shutil.copytree(DOCS, copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    # Pages include files from outside docs/ (pymdownx.snippets, base path the root).
    for included in SNIPPETS:
        (copy / included).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / included, copy / included)
    target = copy / "docs" / page
    existing = target.read_text(encoding="utf-8") if target.exists() else ""
    target.write_text(existing + appended, encoding="utf-8")

    done = build(copy, tmp_path / "site")

    assert done.returncode != 0
    assert reported in done.stdout + done.stderr


def tiers() -> list[Any]:
    """The tiers of extensions/mlops.py, in the order of the docs' table."""
    return list(extension_module().TIERS.values())


def test_tier_table_matches_the_extension() -> None:
    text = (DOCS / "questions.md").read_text(encoding="utf-8")

    def row(label: str) -> list[str]:
        match = re.search(rf"^\| {re.escape(label)} \|(.*)\|$", text, re.MULTILINE)
        assert match, f"questions.md has no row '{label}'"
        return [cell.strip() for cell in match[1].split("|")]

    assert row("feature store (default)") == [
        "Feast" if tier.feature_store else "off: features in code" for tier in tiers()
    ]
    assert row("quality gate floor (AUC / F1)") == [
        f"{tier.gate_min_auc:.2f} / {tier.gate_min_f1:.2f}" for tier in tiers()
    ]
    assert row("allowed AUC regression vs the champion") == [
        f"{tier.gate_max_regression:g}" for tier in tiers()
    ]
    assert row("dataset drift when this share of features drift") == [
        f"{round(tier.drift_share * 100)} %" for tier in tiers()
    ]
    assert row("rollout strategy (default)") == [tier.rollout_strategy for tier in tiers()]
    assert row("serving (default)") == [tier.serving for tier in tiers()]
