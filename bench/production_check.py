"""One production check over N logged predictions; run with a rendered project's Python.

Usage: python production_check.py HOME ROWS. HOME holds a trained champion (embedded
mode); ROWS predictions (drifted, a tenth with labels) are written straight into its
parquet inference log, then the check runs once without retraining. Prints the
seconds the check took; the caller measures the process's peak RSS.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from churn_model.config import Settings
from churn_model.core.dataset import inference_batch, outcomes
from churn_model.io.inference_log import ParquetStore
from churn_model.jobs.production import production_check


def main() -> None:
    home, rows = sys.argv[1], int(sys.argv[2])
    settings = Settings(home=home, retrain_on_alert=False, _env_file=None)  # type: ignore[call-arg]
    store = ParquetStore(settings.home / "inference_log")
    rng = np.random.default_rng(7)
    base = inference_batch(20_000, seed=8, drifted=True)
    frame = base.iloc[rng.integers(0, len(base), rows)].reset_index(drop=True)
    now = datetime.now(UTC)
    frame.insert(0, "request_id", [f"{i:032x}" for i in range(rows)])
    frame.insert(
        1, "served_at", [now - timedelta(seconds=int(s)) for s in rng.integers(0, 3600, rows)]
    )
    frame.insert(2, "model_version", "1")
    frame["probability"] = rng.uniform(size=rows)
    frame["prediction"] = frame["probability"] >= 0.5
    frame["variant"] = "champion"
    day = store.predictions_dir / f"date={now.date().isoformat()}"
    day.mkdir(parents=True, exist_ok=True)
    schema = ParquetStore.prediction_schema()
    pq.write_table(
        pa.Table.from_pandas(frame, schema=schema, preserve_index=False), day / "bench.parquet"
    )
    labelled = frame.sample(frac=0.1, random_state=9)
    feedback = pa.table(
        {
            "request_id": labelled["request_id"],
            "churned": outcomes(labelled, seed=10).to_numpy(),
            "received_at": [now] * len(labelled),
        },
        schema=ParquetStore.feedback_schema(),
    )
    store.feedback_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(feedback, store.feedback_dir / "bench.parquet")

    started = time.perf_counter()
    result = production_check.fn(settings, window_hours=2)
    print(f"{time.perf_counter() - started:.2f} {result.rows} {result.drift.dataset_drift}")


if __name__ == "__main__":
    main()
