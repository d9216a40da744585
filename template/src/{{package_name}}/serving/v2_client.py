"""A typed V2 (Open Inference Protocol) client for the churn model, over tritonclient.http.

The same requests reach MLServer locally, a KServe InferenceService and a
Seldon Model: one tensor per feature column (``INT64``, ``FP64`` or ``BYTES``
from the feature contract), and ``parameters.content_type = "pd"`` so the
runtime rebuilds a DataFrame and MLflow's signature checks the columns by name.

`predict_customers` is the feature-enrichment step: customer ids in, online
features looked up, then one V2 call. In a cluster a KServe transformer or a
Seldon Pipeline step runs it; locally it runs in the caller's process.

tritonclient and numpy are imported lazily (tritonclient pulls in gevent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.schema import ENTITY, FEATURE_NAMES, FEATURES

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np
    import pandas as pd
    from tritonclient.http import InferenceServerClient, InferInput

    from ..io.feature_source import FeatureSource

    # Column name -> equal-length values: a DataFrame, or a plain dict of lists.
    Columns = pd.DataFrame | Mapping[str, Sequence[Any]]

# The feature contract's dtypes as V2 datatypes (and the numpy dtype each is sent as).
V2_DATATYPES: dict[str, tuple[str, str]] = {
    "int64": ("INT64", "int64"),
    "float64": ("FP64", "float64"),
    "string": ("BYTES", "object"),
}
# Asks the runtime to decode the inputs into one DataFrame (MLServer's pandas codec).
REQUEST_PARAMETERS = {"content_type": "pd"}


class V2RequestError(Exception):
    """The server refused a request: `status` is its HTTP status, the message its reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Prediction:
    """A churn probability for one customer, and which model version gave it."""

    customer_id: int
    churn_probability: float
    model_version: str


@dataclass(frozen=True)
class Scores:
    """Churn probabilities for the rows of one request, in request order."""

    churn_probability: list[float]
    model_version: str


def feature_inputs(columns: Columns) -> list[InferInput]:
    """One V2 input per contract column (plus the customer id when present), typed by the contract.

    `columns` maps column names to equal-length values: a DataFrame or a dict of
    lists. The model's signature ignores ``customer_id``; it travels along so a
    request logger (KServe's logger, Seldon's Kafka topics) can tell whose
    prediction it was.
    """
    from tritonclient.http import InferInput

    dtypes = {spec.name: spec.dtype for spec in FEATURES}
    if ENTITY in columns:
        dtypes = {ENTITY: "int64", **dtypes}
    inputs = []
    for name, dtype in dtypes.items():
        datatype, numpy_dtype = V2_DATATYPES[dtype]
        values = _typed(name, columns[name], numpy_dtype)
        tensor = InferInput(name, [len(values)], datatype)
        # JSON, not Triton's binary extension: MLServer reads JSON tensors only.
        tensor.set_data_from_numpy(values, binary_data=False)
        inputs.append(tensor)
    return inputs


def _typed(name: str, values: Sequence[Any], numpy_dtype: str) -> np.ndarray:
    """`values` as the array the V2 datatype needs; never rounds a fractional integer feature."""
    import numpy as np

    if numpy_dtype == "object":
        return np.asarray([str(value) for value in values], dtype=object)
    array = np.asarray(values)
    if numpy_dtype == "int64" and array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0):
        raise ValueError(f"{name} must hold whole numbers, got {array.tolist()}")
    return array.astype(numpy_dtype)


class V2Client:
    """Churn probabilities from a V2 server (MLServer, KServe, Seldon) for feature rows."""

    def __init__(self, url: str, model_name: str, *, timeout: float = 10.0) -> None:
        """`url` is ``host:port`` of the V2 HTTP endpoint; one connection, reused."""
        from tritonclient.http import InferenceServerClient

        self.model_name = model_name
        self._client: InferenceServerClient = InferenceServerClient(
            url, connection_timeout=timeout, network_timeout=timeout
        )
        # Seldon's mesh routes a request to the model this header names (the URL path
        # alone does not reach it); MLServer and KServe ignore it.
        self._headers = {"Seldon-Model": model_name}

    def ready(self) -> bool:
        """Server and model both ready."""
        return bool(
            self._client.is_server_ready(headers=self._headers)
            and self._client.is_model_ready(self.model_name, headers=self._headers)
        )

    def metadata(self) -> dict[str, Any]:
        """The model's V2 metadata: its inputs and outputs as the server sees them."""
        from tritonclient.utils import InferenceServerException

        try:
            return dict(self._client.get_model_metadata(self.model_name, headers=self._headers))
        except InferenceServerException as error:
            raise V2RequestError(int(error.status() or 0), str(error.message())) from None

    def score(self, rows: Columns | Sequence[Mapping[str, Any]]) -> Scores:
        """Churn probability per row; rows hold the contract's features (and may hold the id).

        `rows` is a DataFrame, a dict of columns, or a list of row dicts.
        """
        from tritonclient.utils import InferenceServerException

        # A DataFrame and a dict of columns are not sequences; a list of row dicts is.
        columns = _columns(rows) if isinstance(rows, Sequence) else rows
        missing = [name for name in FEATURE_NAMES if name not in columns]
        if missing:
            raise ValueError(f"rows lack the features {missing}")
        try:
            result = self._client.infer(
                self.model_name,
                feature_inputs(columns),
                parameters=REQUEST_PARAMETERS,
                headers=self._headers,
            )
        except InferenceServerException as error:
            status = int(error.status() or 0)
            raise V2RequestError(status, str(error.message())) from None
        response = result.get_response()
        return Scores(
            churn_probability=_churn_column(result.as_numpy(response["outputs"][0]["name"])),
            model_version=str(response.get("model_version", "")),
        )

    def predict_proba(self, rows: Columns | Sequence[Mapping[str, Any]]) -> list[float]:
        """Just the probabilities of `score`."""
        return self.score(rows).churn_probability

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> V2Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _churn_column(output: np.ndarray | None) -> list[float]:
    """P(churn) from the model's output: column 1 of ``[P(no churn), P(churn)]`` rows."""
    if output is None or output.ndim != 2 or output.shape[1] != 2:
        shape = None if output is None else output.shape
        raise V2RequestError(
            200, f"expected one [P(no churn), P(churn)] row per input row, got shape {shape}"
        )
    return [float(value) for value in output[:, 1]]


def _columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    names = [name for name in (ENTITY, *FEATURE_NAMES) if rows and name in rows[0]]
    return {name: [row[name] for row in rows] for name in names}


def predict_customers(
    client: V2Client, source: FeatureSource, customer_ids: Sequence[int]
) -> list[Prediction | None]:
    """The enrichment step: online features for each id, then one V2 call for the known ones.

    None for a customer the online store does not know (the service answers 404 there).
    No DataFrame on this path: building one costs more than the lookup.
    """
    found = source.online(list(customer_ids))
    known = [
        {ENTITY: int(customer_id), **{name: row[name] for name in FEATURE_NAMES}}
        for customer_id, row in zip(customer_ids, found, strict=True)
        if row is not None
    ]
    if not known:
        return [None] * len(customer_ids)
    scores = client.score(known)
    by_id = {
        row[ENTITY]: Prediction(row[ENTITY], probability, scores.model_version)
        for row, probability in zip(known, scores.churn_probability, strict=True)
    }
    return [by_id.get(int(customer_id)) for customer_id in customer_ids]
