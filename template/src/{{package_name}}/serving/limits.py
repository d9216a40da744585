"""What the service refuses before parsing a request: a body too large, or not JSON.

BentoML reads a body whole and validates it in the worker. Without a limit, one
request of about 12 MB (thousands of unknown keys) grew a worker to 1.7 GB and
held it for seconds. So the declared length (Content-Length) is checked before a
byte is read, and a body sent without one (chunked) is counted while it arrives
and refused once past the limit. Media types other than JSON are refused too:
BentoML answered a multipart body without a boundary with a 500.
"""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response

JSON_MEDIA_TYPES = ("application/json",)


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type in JSON_MEDIA_TYPES or media_type.endswith("+json")


class RequestGuard:
    """ASGI middleware: 413 for a body over `max_bytes`, 415 for one that is not JSON."""

    def __init__(self, app: ASGIApp, paths: tuple[str, ...], max_bytes: int) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "") not in self.paths:
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1"): value for name, value in scope["headers"]}
        content_type = headers.get("content-type", b"").decode("latin-1")
        # No content type at all is read as JSON: a plain `curl --data-binary` sends none.
        if content_type and not _is_json(content_type):
            refusal = error_response(
                415,
                "unsupported_media_type",
                f"the body must be JSON (Content-Type: application/json), not {content_type!r}",
                field="content-type",
            )
            await refusal(scope, receive, send)
            return
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        # Chunked: read the body here, up to the limit, then hand it on.
        body: list[Message] = []
        size = 0
        while True:
            message = await receive()
            body.append(message)
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay() -> Message:
            return body.pop(0) if body else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = error_response(
            413,
            "too_large",
            f"the request body is over {self.max_bytes} bytes (max_request_bytes)",
        )
        await refusal(scope, receive, send)
