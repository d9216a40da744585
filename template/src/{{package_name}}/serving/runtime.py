"""The MLServer runtime: MLServer's MLflow runtime, answering bad requests with 400.

MLServer imports this module itself (``model-settings.json`` names
`ModelRuntime`); the project's own code never imports it, so MLServer
and MLflow are imported at the top.

The stock ``mlserver_mlflow.MLflowRuntime`` lets every input error escape as
HTTP 500 with no detail (MLServer issue #360): MLflow's schema errors (a
missing input, a float where an integer belongs) and the decoder's (a string
in an FP64 tensor, a null). This subclass checks each request first, against
the model's signature (names, datatypes, shapes) and the feature contract
(values, ranges, categories, as the BentoML service's request model does),
naming every offending input, and turns any schema error MLflow still raises
into MLServer's `InferenceError` (HTTP 400). Predictions are untouched: one
``[P(no churn), P(churn)]`` row per request row.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mlflow.exceptions import MlflowException
from mlserver.errors import InferenceError
from mlserver.types import Parameters
from mlserver_mlflow import MLflowRuntime

from ..core.schema import FEATURES, FeatureSpec

if TYPE_CHECKING:
    from mlserver.types import InferenceRequest, InferenceResponse, RequestInput

CONTRACT = {spec.name: spec for spec in FEATURES}
# At most this many problems are listed: one bad column of 10,000 rows is one line.
MAX_LISTED = 10


class ModelRuntime(MLflowRuntime):
    """`MLflowRuntime` with request checks: client mistakes are 4xx, never 5xx."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        problems = self.request_problems(payload)
        if problems:
            listed = "; ".join(problems[:MAX_LISTED])
            more = len(problems) - MAX_LISTED
            raise InferenceError(
                "invalid inference request: " + listed + (f"; {more} more" if more > 0 else "")
            )
        try:
            return await super().predict(self.model_request(payload))
        except MlflowException as error:
            # What the checks above missed; MLflow's message names the column.
            raise InferenceError(error.message) from None

    def model_request(self, payload: InferenceRequest) -> InferenceRequest:
        """`payload` as the model sees it: its signature's inputs, no protocol flags.

        The customer id travels with the features but is no model input, and
        tritonclient adds ``binary_data_output``; the stock runtime hands both to
        MLflow, which logs a warning for each on every request.
        """
        expected = {tensor.name for tensor in self.inputs or []}
        parameters = payload.parameters
        model_params = self._signature is not None and self._signature.params is not None
        if parameters is not None and parameters.model_extra and not model_params:
            # A signature without params: extra request parameters are protocol flags.
            parameters = Parameters(
                content_type=parameters.content_type, headers=parameters.headers
            )
        return payload.model_copy(
            update={
                "inputs": [tensor for tensor in payload.inputs if tensor.name in expected],
                "parameters": parameters,
            }
        )

    def request_problems(self, payload: InferenceRequest) -> list[str]:
        """Every way `payload` breaks the signature or the contract, one line each."""
        given = {request_input.name: request_input for request_input in payload.inputs}
        expected = self.inputs or []
        problems = [
            f"input '{tensor.name}' is missing" for tensor in expected if tensor.name not in given
        ]
        rows: set[int] = set()
        for tensor in expected:
            request_input = given.get(tensor.name)
            if request_input is None:
                continue
            if request_input.datatype != tensor.datatype:
                problems.append(
                    f"input '{tensor.name}' must have datatype {tensor.datatype}, "
                    f"not {request_input.datatype}"
                )
                continue
            shape_problem = _shape_problem(request_input)
            if shape_problem:
                problems.append(shape_problem)
                continue
            rows.add(request_input.shape[0])
            spec = CONTRACT.get(tensor.name)
            if spec is not None:
                problems.extend(_value_problems(spec, _flatten(request_input.data.root)))
        if len(rows) > 1:
            problems.append(f"inputs disagree on the number of rows: {sorted(rows)}")
        return problems


def _flatten(values: object) -> list[object]:
    if isinstance(values, list):
        return [scalar for value in values for scalar in _flatten(value)]
    return [values]


def _shape_problem(request_input: RequestInput) -> str | None:
    shape = list(request_input.shape)
    if not shape or any(size < 0 for size in shape):
        return f"input '{request_input.name}' has an invalid shape {shape}"
    count = len(_flatten(request_input.data.root))
    if count != math.prod(shape):
        return f"input '{request_input.name}' has {count} values for shape {shape}"
    return None


def _value_problems(spec: FeatureSpec, values: list[object]) -> list[str]:
    """Values of one input against its contract: type, finiteness, range, category."""
    problems = []
    for position, value in enumerate(values):
        where = f"input '{spec.name}' value {position}"
        if spec.is_categorical:
            if value not in spec.categories:
                problems.append(f"{where}: {value!r} is not one of {list(spec.categories)}")
            continue
        # bool is an int to Python, not a number to the contract.
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{where}: {value!r} is not a number")
            continue
        if spec.dtype == "int64" and not float(value).is_integer():
            problems.append(f"{where}: {value!r} is not an integer")
        elif not math.isfinite(value):
            problems.append(f"{where}: {value!r} is not finite")
        elif spec.minimum is not None and value < spec.minimum:
            problems.append(f"{where}: {value!r} is below the minimum {spec.minimum}")
        elif spec.maximum is not None and value > spec.maximum:
            problems.append(f"{where}: {value!r} is above the maximum {spec.maximum}")
    return problems
