"""The service's error answers: one shape for its own errors and BentoML's validation errors."""

from typing import Any

from starlette.responses import JSONResponse

from . import metrics


def error_response(status: int, kind: str, message: str, field: str | None = None) -> JSONResponse:
    """An error body shaped like BentoML's validation errors: a summary and located details."""
    detail: dict[str, Any] = {"type": kind, "loc": [field] if field else [], "msg": message}
    return JSONResponse(
        {"error": message, "detail": [detail]},
        status_code=status,
        # The metrics middleware counts the error under this kind.
        headers={metrics.ERROR_KIND_HEADER.decode(): kind},
    )
