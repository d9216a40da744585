"""The whole loop on embedded defaults: data -> features -> train -> serve -> predict -> monitor.

Imported only by the CLI's `demo` command and the end-to-end test.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Generator

    from rich.console import Console

    from ..config import Settings
    from .drift_summary import DriftSummary
    from .training import TrainingResult


@dataclass
class DemoResult:
    training: TrainingResult
    predictions: list[dict[str, Any]]
    drift_normal: DriftSummary
    drift_drifted: DriftSummary
    outputs: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


@contextmanager
def _step(console: Console, timings: dict[str, float], title: str) -> Generator[None]:
    started = time.perf_counter()
    with console.status(f"{title}..."):
        yield
    timings[title] = time.perf_counter() - started
    console.print(f"[green]done[/] {title} [dim]({timings[title]:.1f} s)[/]")


def run_demo(settings: Settings, console: Console, port: int | None = None) -> DemoResult:
    from ..core.dataset import inference_batch
    from ..core.schema import ENTITY, FEATURE_NAMES
    from ..serving import client, server
    from .monitoring import check_drift, load_reference
    from .training import training_flow, write_synthetic_data

    settings.ensure_dirs()
    timings: dict[str, float] = {}
    with _step(console, timings, "Generate the example data and load the feature store"):
        data = write_synthetic_data(settings)
    with _step(console, timings, "Train, gate and register"):
        training = training_flow(settings)
    if not training.promoted and training.champion_metrics is None:
        raise RuntimeError(f"the first model did not pass the gate: {training.gate.summary()}")

    predictions: list[dict[str, Any]] = []
    with _step(console, timings, "Serve the champion and predict over HTTP"):
        process = server.start(settings, port or server.free_port(settings.host))
        base_url = process.base_url
        try:
            server.wait_ready(base_url, timeout=120, process=process)
            customers = data.labels[ENTITY].head(3).tolist()
            for customer_id in customers:
                predictions.append(client.predict(base_url, customer_id=int(customer_id)))
            # to_dict gives native Python values, which JSON accepts.
            full_row = data.features[list(FEATURE_NAMES)].tail(1).to_dict("records")[0]
            predictions.append(client.predict(base_url, features=full_row))
        finally:
            server.stop(process)

    with _step(console, timings, "Check drift on a normal and a drifted batch"):
        reference = load_reference(settings)
        normal = check_drift(
            reference, inference_batch(500, settings.seed + 1), settings, name="drift-normal"
        )
        drifted = check_drift(
            reference,
            inference_batch(500, settings.seed + 1, drifted=True),
            settings,
            name="drift-drifted",
        )

    outputs = {
        "MLflow store": settings.mlflow_tracking_uri,
        "Registered model": f"models:/{settings.model_name}@{settings.champion_alias} (version {training.version})",
        "Feature data": str(settings.data_dir),
        "Drift report (normal)": str(normal.html_path),
        "Drift report (drifted)": str(drifted.html_path),
        "Drift summary (drifted)": str(drifted.json_path),
        "Drift metrics (drifted)": str(drifted.metrics_path),
    }
    return DemoResult(
        training=training,
        predictions=predictions,
        drift_normal=normal,
        drift_drifted=drifted,
        outputs=outputs,
        timings=timings,
    )
