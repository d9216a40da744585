"""A small HTTP client for the model service (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class ServiceError(RuntimeError):
    """The service answered with an error status; `detail` is its JSON body."""

    def __init__(self, status: int, detail: Any) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"HTTP {status}: {detail}")


class ServiceUnreachableError(ConnectionError):
    """No answer from the service: nothing listens there, or it timed out."""

    def __init__(self, url: str, reason: object) -> None:
        self.url = url
        super().__init__(f"no answer from the service at {url}: {reason}")


def post_json(base_url: str, path: str, body: dict[str, Any], timeout: float = 10.0) -> Any:
    request = urllib.request.Request(
        f"{base_url.rstrip('/')}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        payload = error.read()
        try:
            detail = json.loads(payload)
        except ValueError:
            detail = payload.decode(errors="replace")
        raise ServiceError(error.code, detail) from None
    # HTTPError is a URLError too: only what is left here never reached the service.
    except urllib.error.URLError as error:
        raise ServiceUnreachableError(base_url, error.reason) from None
    except (TimeoutError, ConnectionError) as error:
        raise ServiceUnreachableError(base_url, error) from None


def predict(
    base_url: str, *, customer_id: int | None = None, features: dict[str, Any] | None = None
) -> Any:
    """Score one customer: by id (features looked up online) or by a full feature row."""
    request: dict[str, Any] = {}
    if customer_id is not None:
        request["customer_id"] = customer_id
    if features is not None:
        request["features"] = features
    return post_json(base_url, "/predict", request)


def feedback(base_url: str, request_id: str, churned: bool) -> Any:
    """Report the true outcome of the prediction answered with `request_id`."""
    return post_json(base_url, "/feedback", {"request_id": request_id, "churned": churned})
