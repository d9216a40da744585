"""The inference log in parquet files: the store when ``inference_log_url`` is empty.

One file per batch with a unique name, written under a hidden temporary name
and renamed into place, so several service workers write side by side and
readers never see half a file. Predictions and shadow scores are partitioned by
day (``predictions/date=YYYY-MM-DD/``) so a window reads only the days it
covers. Files from before a column existed read it as missing (``variant``:
champion). pandas and pyarrow are imported inside the methods that need them.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from ..core.schema import ENTITY, FEATURES, LABEL
from .inference_log_store import (
    PREDICTION_COLUMNS,
    RECEIVED_AT,
    SCORED_AT,
    SERVED_AT,
    SHADOW_COLUMNS,
    VARIANT,
    Row,
    as_utc,
    window_frame,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as ds


def _by_day(rows: list[Row], column: str, directory: Path) -> dict[Path, list[Row]]:
    """Rows grouped into the ``date=<day>`` partitions of `directory`, by `column`'s day."""
    parts: dict[Path, list[Row]] = {}
    for row in rows:
        parts.setdefault(directory / f"date={row[column].date().isoformat()}", []).append(row)
    return parts


class ParquetStore:
    """Parquet files under `directory`: ``predictions/date=<day>/``, ``feedback/``
    and ``shadow/date=<day>/``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.predictions_dir = directory / "predictions"
        self.feedback_dir = directory / "feedback"
        self.shadow_dir = directory / "shadow"

    @staticmethod
    def prediction_schema() -> pa.Schema:
        import pyarrow as pa

        types = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}
        return pa.schema(
            [
                ("request_id", pa.string()),
                (SERVED_AT, pa.timestamp("us", tz="UTC")),
                ("model_version", pa.string()),
                (VARIANT, pa.string()),
                (ENTITY, pa.int64()),
                *[(spec.name, types[spec.dtype]) for spec in FEATURES],
                ("probability", pa.float64()),
                ("prediction", pa.bool_()),
            ]
        )

    @staticmethod
    def feedback_schema() -> pa.Schema:
        import pyarrow as pa

        return pa.schema(
            [
                ("request_id", pa.string()),
                (LABEL, pa.bool_()),
                (RECEIVED_AT, pa.timestamp("us", tz="UTC")),
            ]
        )

    @staticmethod
    def shadow_schema() -> pa.Schema:
        import pyarrow as pa

        return pa.schema(
            [
                ("request_id", pa.string()),
                ("shadow_version", pa.string()),
                ("shadow_probability", pa.float64()),
                (SCORED_AT, pa.timestamp("us", tz="UTC")),
            ]
        )

    def write_predictions(self, rows: list[Row]) -> None:
        self._write_files(_by_day(rows, SERVED_AT, self.predictions_dir), self.prediction_schema())

    def write_feedback(self, rows: list[Row]) -> None:
        self._write_files({self.feedback_dir: rows}, self.feedback_schema())

    def write_shadow(self, rows: list[Row]) -> None:
        self._write_files(_by_day(rows, SCORED_AT, self.shadow_dir), self.shadow_schema())

    @staticmethod
    def _write_files(parts: Mapping[Path, list[Row]], schema: pa.Schema) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        # Unique per process and batch: workers never write the same file.
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
        written = []
        for directory, rows in parts.items():
            directory.mkdir(parents=True, exist_ok=True)
            # Readers skip names starting with "."; the rename below publishes the file whole.
            temporary = directory / f".{name}.tmp"
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), temporary)
            written.append((temporary, directory / name))
        for temporary, final in written:
            os.replace(temporary, final)

    @staticmethod
    def _days(directory: Path, schema: pa.Schema) -> ds.Dataset:
        """The ``date=<day>`` partitions under `directory`; `schema` fills columns older files lack."""
        import pyarrow as pa
        import pyarrow.dataset as ds

        day = pa.field("date", pa.string())
        return ds.dataset(
            directory,
            format="parquet",
            schema=schema.append(day),
            partitioning=ds.partitioning(pa.schema([day]), flavor="hive"),
        )

    def read_window(self, start: datetime, end: datetime) -> pd.DataFrame:
        import pyarrow as pa
        import pyarrow.dataset as ds

        start, end = as_utc(start), as_utc(end)
        schema = self.prediction_schema()
        columns = list(PREDICTION_COLUMNS)
        if self.predictions_dir.is_dir():
            in_window = (
                (ds.field("date") >= start.date().isoformat())
                & (ds.field("date") <= end.date().isoformat())
                & (ds.field(SERVED_AT) >= pa.scalar(start, schema.field(SERVED_AT).type))
                & (ds.field(SERVED_AT) < pa.scalar(end, schema.field(SERVED_AT).type))
            )
            predictions = self._days(self.predictions_dir, schema).to_table(
                columns=columns, filter=in_window
            )
        else:
            predictions = schema.empty_table()
        joined = (
            predictions.to_pandas()
            .merge(self._labels(), on="request_id", how="left")
            .merge(self._shadow(start, end), on="request_id", how="left")
        )
        return window_frame(joined)

    def _shadow(self, start: datetime, end: datetime) -> pd.DataFrame:
        import pyarrow.dataset as ds

        schema = self.shadow_schema()
        if self.shadow_dir.is_dir():
            # Scored just after serving: possibly past midnight of the window's last day.
            last_day = (end + timedelta(days=1)).date().isoformat()
            in_days = (ds.field("date") >= start.date().isoformat()) & (
                ds.field("date") <= last_day
            )
            shadow = self._days(self.shadow_dir, schema).to_table(
                columns=list(SHADOW_COLUMNS), filter=in_days
            )
        else:
            shadow = schema.empty_table()
        scored = shadow.to_pandas().drop_duplicates("request_id", keep="last")
        return scored[["request_id", "shadow_version", "shadow_probability"]]

    def _labels(self) -> pd.DataFrame:
        import pyarrow.dataset as ds

        schema = self.feedback_schema()
        if self.feedback_dir.is_dir():
            feedback = ds.dataset(self.feedback_dir, format="parquet", schema=schema).to_table()
        else:
            feedback = schema.empty_table()
        # A corrected label replaces the earlier one.
        latest = feedback.to_pandas().sort_values(RECEIVED_AT, kind="stable")
        return latest.drop_duplicates("request_id", keep="last")[["request_id", LABEL]]

    def logged_request_ids(self, request_ids: set[str]) -> set[str]:
        import pyarrow.dataset as ds

        if not request_ids or not self.predictions_dir.is_dir():
            return set()
        found = self._days(self.predictions_dir, self.prediction_schema()).to_table(
            columns=["request_id"], filter=ds.field("request_id").isin(sorted(request_ids))
        )
        return {str(request_id) for request_id in found.column("request_id").to_pylist()}

    def count(self) -> int:
        import pyarrow.dataset as ds

        if not self.predictions_dir.is_dir():
            return 0
        return int(ds.dataset(self.predictions_dir, format="parquet").count_rows())

    def close(self) -> None:
        """Nothing to release: every batch is a closed file."""
