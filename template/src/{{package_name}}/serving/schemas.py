"""Request and response models of the model service, built from the feature contract.

Every bound and category comes from ``core.schema.FEATURES``, so a feature
added there is validated here without another edit. Validation errors name the
offending field (``features.tenure_months``), which the service returns as 400.
"""

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, create_model, model_validator

from ..core.schema import FEATURES, FeatureSpec

# Contract dtype -> Python type of a JSON value.
_PYTHON_TYPES: dict[str, type] = {"int64": int, "float64": float}
# Customer ids are int64 in the feature store and the inference log: a larger id
# cannot exist, and looking it up overflowed inside Feast (a 500, found by fuzzing).
MAX_CUSTOMER_ID = 2**63 - 1
# Unknown keys past this many are answered as one error, not one error each: a body
# of thousands of them made an error answer many times its own size.
MAX_UNKNOWN_KEYS_LISTED = 20


def few_unknown_keys(cls: type[BaseModel], data: Any) -> Any:
    """Refuse, in one error, a body holding more unknown keys than are worth listing.

    A model's "before" validator (``cls`` is the model: pydantic makes a function
    whose first parameter is named so a classmethod).
    """
    if isinstance(data, dict):
        unknown = [key for key in data if key not in cls.model_fields]
        if len(unknown) > MAX_UNKNOWN_KEYS_LISTED:
            shown = ", ".join(repr(str(key)[:40]) for key in unknown[:MAX_UNKNOWN_KEYS_LISTED])
            raise ValueError(
                f"{len(unknown)} unknown keys, e.g. {shown} "
                f"and {len(unknown) - MAX_UNKNOWN_KEYS_LISTED} more"
            )
    return data


def _feature_field(spec: FeatureSpec) -> tuple[Any, Any]:
    if spec.is_categorical:
        # Literal[("a", "b")] is Literal["a", "b"]: the categories become the allowed values.
        return Literal[spec.categories], Field(  # ty: ignore[invalid-type-form]  # the categories are data, read at import
            description=spec.description, examples=[spec.typical]
        )
    return _PYTHON_TYPES[spec.dtype], Field(
        description=spec.description,
        examples=[spec.typical],
        ge=spec.minimum,
        le=spec.maximum,
        allow_inf_nan=False,
    )


FeatureRow = create_model(  # ty: ignore[no-matching-overload]  # **fields could hold __base__, as far as a checker knows
    "FeatureRow",
    __config__=ConfigDict(extra="forbid", title="FeatureRow"),
    __doc__="One customer's full feature row, in the units and ranges of the contract.",
    __validators__={"_few_unknown_keys": model_validator(mode="before")(few_unknown_keys)},
    **{spec.name: _feature_field(spec) for spec in FEATURES},
)


class PredictRequest(BaseModel):
    """Score one customer: by id (features looked up online) or by a full feature row."""

    # The title names the model in validation errors; extra keys are typos, not data.
    model_config = ConfigDict(extra="forbid", title="PredictRequest")

    customer_id: int | None = Field(
        default=None,
        ge=0,
        le=MAX_CUSTOMER_ID,
        description="Look the customer's latest features up online",
    )
    features: FeatureRow | None = Field(default=None, description="Score this feature row as given")

    _few_unknown_keys = model_validator(mode="before")(few_unknown_keys)

    @model_validator(mode="after")
    def _exactly_one_input(self) -> Self:
        if (self.customer_id is None) == (self.features is None):
            raise ValueError(
                "give exactly one of 'customer_id' (features looked up online) "
                "or 'features' (a full feature row)"
            )
        return self


class PredictResponse(BaseModel):
    """The decision, its probability, and which registered model version made it."""

    customer_id: int | None = Field(default=None, description="Echoed when the request gave one")
    prediction: bool = Field(description="True when the customer is predicted to churn")
    probability: float = Field(ge=0.0, le=1.0, description="Predicted probability of churn")
    model_version: str = Field(description="Registered model version that scored the request")
    variant: Literal["champion", "challenger"] = Field(
        description="Which model served the request: the champion, or the challenger of a canary"
    )
    request_id: str = Field(description="Quote it in POST /feedback once the outcome is known")


class FeedbackRequest(BaseModel):
    """The true outcome of a served prediction, named by the request id it was given."""

    model_config = ConfigDict(extra="forbid", title="FeedbackRequest")

    request_id: str = Field(
        pattern=r"^[0-9a-f]{32}$", description="The request_id of a /predict response"
    )
    # Strict: a label is JSON true or false, not "yes" or 1.
    churned: StrictBool = Field(description="Whether the customer did churn")

    _few_unknown_keys = model_validator(mode="before")(few_unknown_keys)


class FeedbackResponse(BaseModel):
    """The label is queued for the inference log (202 Accepted)."""

    request_id: str
    churned: bool


class ReloadResponse(BaseModel):
    """Outcome of re-reading the champion alias and the rollout."""

    reloaded: bool = Field(
        description="True when what is served changed: a new champion, or a rollout step"
    )
    model_version: str | None = Field(description="Version now served, None before any champion")
