"""Operations of the JSON API: each declares its types once, for decoding, encoding and
the OpenAPI document alike."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .. import runtime
from . import auth
from .errors import HttpError, from_exception

_PATH_PARAM = re.compile(r"{(\w+)(?::\w+)?}")


@dataclass(frozen=True)
class Call:
    """What a handler gets: the caller and the decoded request."""

    principal: auth.Principal
    path: dict[str, str]
    query: Any
    body: Any
    headers: Headers


@dataclass(frozen=True)
class Operation:
    """One endpoint of the API.

    Attributes:
        method: HTTP method.
        path: Path under ``/api/v1`` in Starlette syntax (``/executions/{execution_id}``).
        name: The OpenAPI ``operationId``.
        summary: One line for the OpenAPI document.
        handler: Runs in a worker thread (the public API blocks); returns the response value,
            or, for a stream, an async iterator of server-sent event texts.
        tag: The resource it belongs to.
        query: Struct of the query parameters.
        body: Type of the JSON body.
        response: Type of the JSON response; None answers 204 with no body.
        status: Status of a successful response.
        admin: Only admin tokens may call it.
        stream: The response is ``text/event-stream``.
    """

    method: str
    path: str
    name: str
    summary: str
    handler: Callable[[Call], Any]
    tag: str
    query: type[msgspec.Struct] | None = None
    body: Any = None
    response: Any = None
    status: int = 200
    admin: bool = False
    stream: bool = False
    params: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = tuple(_PATH_PARAM.findall(self.path))
        object.__setattr__(self, "params", names)


def endpoint(op: Operation) -> Callable[[Request], Any]:
    """Return the Starlette endpoint that runs ``op``."""

    async def handle(request: Request) -> Response:
        try:
            principal = await run_in_threadpool(auth.require, request)
            if op.admin and not principal.admin:
                raise HttpError(403, f"{op.name} needs an admin token")
            call = Call(
                principal=principal,
                path=dict(request.path_params),
                query=_query(op, request),
                body=await _body(op, request),
                headers=request.headers,
            )
            result = await run_in_threadpool(op.handler, call)
        except Exception as exc:
            return from_exception(exc)
        if op.stream:
            return StreamingResponse(
                result,
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        if op.response is None:
            return Response(status_code=204)
        return Response(msgspec.json.encode(result), op.status, media_type="application/json")

    handle.__name__ = op.name
    return handle


def _query(op: Operation, request: Request) -> Any:
    if op.query is None:
        return None
    try:
        return msgspec.convert(dict(request.query_params), op.query, strict=False)
    except msgspec.ValidationError as exc:
        raise HttpError(422, f"invalid query parameter: {exc}") from None


async def read_body(request: Request) -> bytes:
    """Return the request body, refusing one over ``SPANE_MAX_PAYLOAD_BYTES`` unread.

    Raises:
        HttpError: 413 when the declared or actual length is over the limit.
    """
    limit = runtime.get().settings.max_payload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HttpError(413, f"the body is over SPANE_MAX_PAYLOAD_BYTES={limit} bytes")
    raw = await request.body()
    if len(raw) > limit:
        raise HttpError(413, f"the body is over SPANE_MAX_PAYLOAD_BYTES={limit} bytes")
    return raw


async def _body(op: Operation, request: Request) -> Any:
    if op.body is None:
        return None
    raw = await read_body(request)
    if not raw.strip():
        raise HttpError(422, "this request needs a JSON body")
    try:
        return msgspec.json.decode(raw, type=op.body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise HttpError(422, f"invalid request body: {exc}") from None
