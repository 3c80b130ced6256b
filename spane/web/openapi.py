"""The OpenAPI document, built from the operations and the msgspec types they declare."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec

from .. import __version__
from .errors import ErrorBody
from .routing import Operation

PREFIX = "/api/v1"
_REF = "#/components/schemas/{name}"
_CONVERTER = re.compile(r"{(\w+):(\w+)}")
_ERRORS = {
    "400": "The request cannot be carried out",
    "401": "No valid API token",
    "403": "The token may not do this",
    "404": "No such resource (or another tenant's)",
    "409": "The execution's state does not allow this control",
    "422": "The request is invalid; `problems` lists each bad part",
}


def document(operations: Sequence[Operation], *, extra: dict[str, Any]) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of ``operations`` plus the ``extra`` paths (whose
    error responses may refer to ``#/components/schemas/ErrorBody``)."""
    types: list[Any] = [ErrorBody]
    for op in operations:
        types += [t for t in (op.query, op.body, op.response) if t is not None]
    unique = list(dict.fromkeys(types))
    schemas, components = msgspec.json.schema_components(unique, ref_template=_REF)
    schema_of = dict(zip(unique, schemas, strict=True))
    error = {"application/json": {"schema": schema_of[ErrorBody]}}
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        path = PREFIX + _CONVERTER.sub(r"{\1}", op.path)
        spec: dict[str, Any] = {
            "operationId": op.name,
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": _path_parameters(op) + _query_parameters(op, components),
            "responses": {
                **_success(op, schema_of),
                **{code: {"description": text, "content": error} for code, text in _ERRORS.items()},
            },
        }
        if op.body is not None:
            spec["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema_of[op.body]}},
            }
        paths.setdefault(path, {})[op.method.lower()] = spec
    paths.update(extra)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Spane",
            "version": __version__,
            "description": "Start, inspect and control Spane workflows.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"token": []}],
    }


def _success(op: Operation, schema_of: dict[Any, Any]) -> dict[str, Any]:
    if op.stream:
        content = {"text/event-stream": {"schema": {"type": "string"}}}
        return {"200": {"description": "A stream of server-sent events", "content": content}}
    if op.response is None:
        return {str(op.status): {"description": "Done"}}
    return {
        str(op.status): {
            "description": op.summary,
            "content": {"application/json": {"schema": schema_of[op.response]}},
        }
    }


def _path_parameters(op: Operation) -> list[dict[str, Any]]:
    kinds = dict(_CONVERTER.findall(op.path))
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "integer"} if kinds.get(name) == "int" else {"type": "string"},
        }
        for name in op.params
    ]


def _query_parameters(op: Operation, components: dict[str, Any]) -> list[dict[str, Any]]:
    if op.query is None:
        return []
    struct = components[op.query.__name__]
    required = set(struct.get("required", ()))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": _inline(_no_null(schema), components),
        }
        for name, schema in struct["properties"].items()
    ]


def _inline(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema in full: a reference (an enum such as a status) is inlined, so
    that the parameter lists its values where clients look for them."""
    ref = schema.get("$ref")
    if ref is None:
        return schema
    rest = {k: v for k, v in schema.items() if k != "$ref"}
    return {**components[ref.rsplit("/", 1)[1]], **rest}


def _no_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null: drop the null alternative."""
    options = [s for s in schema.get("anyOf", ()) if s != {"type": "null"}]
    if not options:
        return {k: v for k, v in schema.items() if not (k == "default" and v is None)}
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    if schema.get("default") is not None:
        rest["default"] = schema["default"]
    return {**options[0], **rest} if len(options) == 1 else {"anyOf": options, **rest}
