"""HTTP errors, and how every error becomes a JSON body with a message.

Errors of the public API map to status codes by kind; anything unexpected is a 500 whose
body still says what happened, so a client never has to parse an HTML page.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .. import errors
from ..errors import Problem

log = structlog.get_logger("spane.web")


class HttpError(errors.SpaneError):
    """A request the HTTP API refuses, with the status code to answer.

    Args:
        status: The HTTP status code.
        message: What is wrong and what to fix.
        problems: Each bad part of the request with its path.
    """

    def __init__(self, status: int, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.problems = list(problems)


class ErrorBody(msgspec.Struct):
    """The body of every error response."""

    message: str
    problems: list[Problem] = []


#: Status codes of the other errors of the public API (anything else is a 400).
_STATUS: tuple[tuple[type[errors.SpaneError], int], ...] = (
    (errors.UnknownExecution, 404),
    (errors.UnknownWorkflow, 404),
    (errors.UnknownSchedule, 404),
    (errors.UnknownBreaker, 404),
    (errors.InvalidTransition, 409),
    (errors.BlobError, 502),
)


def json_error(status: int, message: str, problems: Sequence[Problem] = ()) -> Response:
    """Return an error response (JSON: ``message`` and ``problems``)."""
    body = msgspec.json.encode(ErrorBody(message, list(problems)))
    return Response(body, status_code=status, media_type="application/json")


def from_exception(exc: BaseException) -> Response:
    """Return the JSON response for an error raised while handling a request."""
    if isinstance(exc, HttpError):
        return json_error(exc.status, str(exc), exc.problems)
    if isinstance(exc, errors.DefinitionError | errors.InputError):
        status = 413 if isinstance(exc, errors.PayloadTooLarge) else 422
        return json_error(status, str(exc), exc.problems)
    if isinstance(exc, errors.SpaneError):
        status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 400)
        return json_error(status, str(exc))
    if isinstance(exc, msgspec.ValidationError | msgspec.DecodeError):
        return json_error(422, f"invalid request: {exc}")
    log.exception("request failed", exc_info=exc)
    return json_error(500, f"internal error: {type(exc).__name__}; see the server log")


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route, method not allowed) as JSON."""
    assert isinstance(exc, HTTPException)
    message = str(exc.detail)
    if exc.status_code in (404, 405):
        message = (
            f"{message}: {request.method} {request.url.path} (the API is described at "
            "/api/v1/openapi.json)"
        )
    return json_error(exc.status_code, message)


async def server_error(request: Request, exc: Exception) -> Response:
    """The last resort: an unexpected error as a JSON 500."""
    return from_exception(exc)
