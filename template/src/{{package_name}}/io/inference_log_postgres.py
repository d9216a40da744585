"""The inference log in Postgres: the store when ``inference_log_url`` is a postgresql URL.

The tables `PREDICTIONS_TABLE`, `FEEDBACK_TABLE` and `SHADOW_TABLE`, created if
missing; columns added since are added to an existing table. Inserts skip
request ids already present, so retrying a batch whose commit was lost cannot
duplicate rows. psycopg and pandas are imported inside the methods that need them.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, cast

from ..core.schema import ENTITY, FEATURES, LABEL
from .inference_log_store import (
    DEFAULT_VARIANT,
    FEEDBACK_COLUMNS,
    FEEDBACK_TABLE,
    JOINED_COLUMNS,
    PREDICTION_COLUMNS,
    PREDICTIONS_TABLE,
    RECEIVED_AT,
    SCORED_AT,
    SERVED_AT,
    SHADOW_COLUMNS,
    SHADOW_TABLE,
    VARIANT,
    Row,
    as_utc,
    window_frame,
)

if TYPE_CHECKING:
    from datetime import datetime
    from typing import LiteralString

    import pandas as pd
    import psycopg

# Contract dtype -> the Postgres column type.
_SQL_TYPES = {"int64": "bigint", "float64": "double precision", "string": "text"}


def _sql(statement: str) -> LiteralString:
    """A statement built from this module's names and the feature contract, never from input.

    psycopg's types accept only literal strings, against SQL injection; these are as safe.
    """
    return cast("LiteralString", statement)


class PostgresStore:
    """The tables `PREDICTIONS_TABLE` and `FEEDBACK_TABLE` in a Postgres database."""

    def __init__(self, url: str) -> None:
        # SQLAlchemy spells the driver into the scheme; libpq wants plain postgresql://.
        scheme, separator, rest = url.partition("://")
        self.conninfo = f"{scheme.partition('+')[0]}{separator}{rest}"
        self._connection: psycopg.Connection[Any] | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        connection = psycopg.connect(self.conninfo)
        self._create_tables(connection)
        return connection

    def _create_tables(self, connection: psycopg.Connection[Any]) -> None:
        features = ", ".join(f"{spec.name} {_SQL_TYPES[spec.dtype]} NOT NULL" for spec in FEATURES)
        with connection.transaction():
            # Workers start together: without the lock, two CREATE TABLE IF NOT EXISTS can collide.
            connection.execute("SELECT pg_advisory_xact_lock(hashtext('inference_log'))")
            connection.execute(
                _sql(
                    f"CREATE TABLE IF NOT EXISTS {PREDICTIONS_TABLE} ("
                    f"request_id text PRIMARY KEY, {SERVED_AT} timestamptz NOT NULL, "
                    f"model_version text NOT NULL, {ENTITY} bigint, {features}, "
                    "probability double precision NOT NULL, prediction boolean NOT NULL)"
                )
            )
            # Columns added since the first release: a database created earlier gains them.
            connection.execute(
                f"ALTER TABLE {PREDICTIONS_TABLE} ADD COLUMN IF NOT EXISTS "
                f"{VARIANT} text NOT NULL DEFAULT '{DEFAULT_VARIANT}'"
            )
            connection.execute(
                f"CREATE INDEX IF NOT EXISTS {PREDICTIONS_TABLE}_{SERVED_AT} "
                f"ON {PREDICTIONS_TABLE} ({SERVED_AT})"
            )
            connection.execute(
                f"CREATE TABLE IF NOT EXISTS {FEEDBACK_TABLE} (request_id text PRIMARY KEY, "
                f"{LABEL} boolean NOT NULL, {RECEIVED_AT} timestamptz NOT NULL)"
            )
            connection.execute(
                f"CREATE TABLE IF NOT EXISTS {SHADOW_TABLE} (request_id text PRIMARY KEY, "
                "shadow_version text NOT NULL, shadow_probability double precision NOT NULL, "
                f"{SCORED_AT} timestamptz NOT NULL)"
            )

    def _write(self, statement: str, columns: tuple[str, ...], rows: list[Row]) -> None:
        if self._connection is None or self._connection.closed:
            self._connection = self._connect()
        try:
            with self._connection.transaction(), self._connection.cursor() as cursor:
                cursor.executemany(
                    _sql(statement), [tuple(row[c] for c in columns) for row in rows]
                )
        except Exception:
            # The next attempt starts from a fresh connection.
            self.close()
            raise

    def _insert_new(self, table: str, columns: tuple[str, ...], rows: list[Row]) -> None:
        # A retried batch repeats request ids that are already stored: keep the first.
        placeholders = ", ".join(["%s"] * len(columns))
        self._write(
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({placeholders}) ON CONFLICT (request_id) DO NOTHING",
            columns,
            rows,
        )

    def write_predictions(self, rows: list[Row]) -> None:
        self._insert_new(PREDICTIONS_TABLE, PREDICTION_COLUMNS, rows)

    def write_feedback(self, rows: list[Row]) -> None:
        # The latest label wins, also when a retried batch arrives after a newer one.
        self._write(
            f"INSERT INTO {FEEDBACK_TABLE} ({', '.join(FEEDBACK_COLUMNS)}) "
            "VALUES (%s, %s, %s) ON CONFLICT (request_id) DO UPDATE "
            f"SET {LABEL} = EXCLUDED.{LABEL}, {RECEIVED_AT} = EXCLUDED.{RECEIVED_AT} "
            f"WHERE EXCLUDED.{RECEIVED_AT} >= {FEEDBACK_TABLE}.{RECEIVED_AT}",
            FEEDBACK_COLUMNS,
            rows,
        )

    def write_shadow(self, rows: list[Row]) -> None:
        self._insert_new(SHADOW_TABLE, SHADOW_COLUMNS, rows)

    def read_window(self, start: datetime, end: datetime) -> pd.DataFrame:
        import pandas as pd

        selected = ", ".join(f"p.{column}" for column in PREDICTION_COLUMNS)
        with self._connect() as connection, connection.cursor() as cursor:
            cursor.execute(
                _sql(
                    f"SELECT {selected}, f.{LABEL}, s.shadow_version, s.shadow_probability "
                    f"FROM {PREDICTIONS_TABLE} AS p "
                    f"LEFT JOIN {FEEDBACK_TABLE} AS f ON f.request_id = p.request_id "
                    f"LEFT JOIN {SHADOW_TABLE} AS s ON s.request_id = p.request_id "
                    f"WHERE p.{SERVED_AT} >= %s AND p.{SERVED_AT} < %s"
                ),
                (as_utc(start), as_utc(end)),
            )
            frame = pd.DataFrame.from_records(
                cursor.fetchall(), columns=[*PREDICTION_COLUMNS, *JOINED_COLUMNS]
            )
        return window_frame(frame)

    def logged_request_ids(self, request_ids: set[str]) -> set[str]:
        if not request_ids:
            return set()
        with self._connect() as connection:
            found = connection.execute(
                _sql(f"SELECT request_id FROM {PREDICTIONS_TABLE} WHERE request_id = ANY(%s)"),
                (sorted(request_ids),),
            ).fetchall()
        return {str(row[0]) for row in found}

    def count(self) -> int:
        with self._connect() as connection:
            row = connection.execute(f"SELECT count(*) FROM {PREDICTIONS_TABLE}").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
