"""The ASGI application of ``spane web``: JSON API, webhooks and dashboard in one."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from . import api, dashboard, errors, hooks, openapi
from .routing import endpoint


def create_app() -> Starlette:
    """Return the web application, serving the process runtime (``spane.configure``)."""
    operations = api.operations()
    document = msgspec.json.encode(openapi.document(operations, extra=hooks.OPENAPI))

    async def openapi_json(request: Request) -> Response:
        return Response(document, media_type="application/json")

    async def livez(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    routes: list[BaseRoute] = [
        Route(openapi.PREFIX + "/openapi.json", openapi_json, methods=["GET"]),
        Route("/livez", livez, methods=["GET"]),
        Route("/hooks/{path:path}", hooks.receive, methods=["POST"]),
    ]
    routes += [
        Route(openapi.PREFIX + op.path, endpoint(op), methods=[op.method], name=op.name)
        for op in operations
    ]
    routes += dashboard.routes()
    handlers: dict[Any, Any] = {
        HTTPException: errors.http_exception,
        Exception: errors.server_error,
    }
    return Starlette(routes=routes, exception_handlers=handlers)
