"""Webhook triggers: ``POST /hooks/<path>`` starts the workflow whose definition declares
``triggers: [{webhook: {path, secret_env, input, tenant}}]``.

A signed hook carries ``Spane-Signature: t=<unix seconds>,v1=<hex>`` (see
:mod:`spane.signatures`) keyed with the secret in ``secret_env``. The timestamp must be within
``SPANE_WEBHOOK_TOLERANCE`` seconds of the server's clock, so a captured request cannot be
replayed later. A hook without ``secret_env`` takes an API token of its tenant instead.
An ``Idempotency-Key`` header starts at most one execution per key.
"""

from __future__ import annotations

from typing import Any

import jmespath
import msgspec
from jmespath.exceptions import JMESPathError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .. import api, runtime, settings, signatures
from ..definitions import Webhook
from ..errors import Problem
from . import auth
from .api.executions import Started
from .errors import HttpError, from_exception
from .routing import read_body

SIGNATURE = signatures.HEADER
IDEMPOTENCY_KEY = "Idempotency-Key"


def verify(secret: str, header: str, body: bytes, *, tolerance: float) -> None:
    """Check a signature header against ``body``.

    Raises:
        HttpError: 401, saying what is wrong (missing, malformed, stale or not matching).
    """
    problem = signatures.check(secret, header, body, tolerance=tolerance)
    if problem is not None:
        raise HttpError(401, problem)


def find(path: str) -> tuple[str, Webhook]:
    """Return the workflow (latest version) with a webhook trigger at ``path``.

    Raises:
        HttpError: 404 when no workflow has one; 409 when several do.
    """
    store = runtime.get().store
    found = []
    for latest in store.browse.workflows():
        _, workflow = store.workflow_version(latest.workflow_id, latest.version)
        for trigger in workflow.triggers:
            if trigger.webhook is not None and trigger.webhook.path == path:
                found.append((workflow.id, trigger.webhook))
    if not found:
        raise HttpError(404, f"no workflow has a webhook trigger at path {path!r}")
    if len(found) > 1:
        names = ", ".join(workflow_id for workflow_id, _ in found)
        raise HttpError(409, f"webhook path {path!r} is declared by {names}; give each its own")
    return found[0]


def _start(request: Request, path: str, body: bytes) -> str:
    workflow_id, hook = find(path)
    if hook.secret_env:
        secret = settings.secret(hook.secret_env)
        if not secret:
            raise HttpError(
                503, f"webhook {path!r} is signed with ${hook.secret_env}, unset on this server"
            )
        tolerance = runtime.get().settings.webhook_tolerance
        verify(secret, request.headers.get(SIGNATURE, ""), body, tolerance=tolerance)
    elif not auth.require(request).sees(hook.tenant):
        raise HttpError(403, f"webhook {path!r} starts executions of another tenant")
    try:
        data: Any = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise HttpError(422, "the body is not JSON", [Problem("body", str(exc))]) from None
    if hook.input:
        try:
            data = jmespath.search(hook.input, data)
        except JMESPathError as exc:
            raise HttpError(
                422,
                "the body does not fit the hook's input expression",
                [Problem("body", str(exc))],
            ) from None
    key = request.headers.get(IDEMPOTENCY_KEY) or None
    if key is not None and len(key) > 200:
        raise HttpError(422, f"{IDEMPOTENCY_KEY} is longer than 200 characters")
    return api.enqueue_workflow(workflow_id, data, tenant=hook.tenant, idempotency_key=key)


async def receive(request: Request) -> Response:
    """The endpoint of every webhook: 202 with the execution id."""
    try:
        body = await read_body(request)
        path = request.path_params["path"]
        execution_id = await run_in_threadpool(_start, request, path, body)
    except Exception as exc:
        return from_exception(exc)
    return Response(
        msgspec.json.encode(Started(execution_id)),
        202,
        media_type="application/json",
        headers={"Location": f"/api/v1/executions/{execution_id}"},
    )


def _error(text: str) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    return {"description": text, "content": {"application/json": {"schema": ref}}}


#: The webhook endpoint in the OpenAPI document.
OPENAPI = {
    "/hooks/{path}": {
        "post": {
            "operationId": "receiveWebhook",
            "summary": "Start the workflow whose webhook trigger has this path",
            "tags": ["webhooks"],
            "security": [{}, {"token": []}],
            "parameters": [
                {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": SIGNATURE, "in": "header", "schema": {"type": "string"}},
                {"name": IDEMPOTENCY_KEY, "in": "header", "schema": {"type": "string"}},
            ],
            "requestBody": {"content": {"application/json": {"schema": {}}}},
            "responses": {
                "202": {
                    "description": "Started",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Started"}}
                    },
                },
                "401": _error("Bad or missing signature (or token)"),
                "404": _error("No workflow has a webhook at this path"),
                "409": _error("Several workflows declare this path"),
                "413": _error("The input is larger than SPANE_MAX_PAYLOAD_BYTES"),
                "422": _error("The body is not JSON or does not match the input schema"),
                "503": _error("The hook's secret is not set on this server"),
            },
        }
    }
}
