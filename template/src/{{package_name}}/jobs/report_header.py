"""Headers on the Evidently HTML reports: which model and data a report judged, and
what it decided.

Evidently draws the charts but not the model, its version or the time window, so a
report opened days later (or from an MLflow run) would not say what it is about.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime
    from pathlib import Path

    import pandas as pd

    from ..config import Settings
    from .drift_summary import DriftSummary

# Where the sections added so far end: the next one goes below them.
_END = "<!-- end of report header -->"


def add_section(report: Path, title: str, rows: Sequence[tuple[str, str]]) -> None:
    """Put a titled table of `rows` at the top of the HTML `report`, below earlier ones."""
    cells = "".join(
        f"<tr><th style='text-align: left; padding-right: 1em'>{html.escape(name)}</th>"
        f"<td>{html.escape(value)}</td></tr>"
        for name, value in rows
    )
    section = (
        "<section style='font-family: sans-serif; margin: 1em 2em'>"
        f"<h2>{html.escape(title)}</h2><table>{cells}</table></section>\n{_END}"
    )
    text = report.read_text(encoding="utf-8")
    if _END in text:
        before, _, after = text.partition(_END)
    else:
        before, body, after = text.partition("<body>")
        if not body:
            raise ValueError(f"{report} has no <body> to put a header in")
        before += body
    report.write_text(before + section + after, encoding="utf-8")


def drift_rows(
    summary: DriftSummary,
    reference: pd.DataFrame,
    settings: Settings,
    window: tuple[datetime, datetime] | None,
) -> list[tuple[str, str]]:
    """The data-drift report's header: model and version, both frames, the verdict."""
    version = reference.attrs.get("model_version")
    rows = [
        ("Model", f"{settings.model_name} version {version}" if version else settings.model_name),
        (
            "Reference",
            f"{summary.n_reference} rows"
            + (f", the training features of version {version}" if version else ""),
        ),
        ("Current", f"{summary.n_current} rows"),
    ]
    if window is not None:
        start, end = window
        rows.append(("Window", f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"))
    drifted = summary.drifted_features
    rows += [
        (
            "Verdict",
            f"{'drift' if summary.dataset_drift else 'no drift'}: {len(drifted)} of "
            f"{len(summary.features)} features drifted ({summary.drifted_share:.0%}; drift from "
            f"{summary.drift_share_threshold:.0%})",
        ),
        ("Drifted features", ", ".join(drifted) or "none"),
        ("Methods", ", ".join(sorted({feature.method for feature in summary.features.values()}))),
        ("Generated", summary.generated_at),
    ]
    return rows
