"""Workflows: list, versions, get, register (admin tokens), validate."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from ... import api, errors, runtime, validation
from ...definitions import to_dict
from ...errors import Problem
from ...store.browse import WorkflowVersion
from ..routing import Call, Operation


class VersionList(msgspec.Struct):
    """Versions, newest first (or the latest of each workflow)."""

    items: list[WorkflowVersion]


class WorkflowOut(msgspec.Struct):
    """A stored version and its definition."""

    workflow_id: str
    version: int
    definition: dict[str, Any]


class VersionQuery(msgspec.Struct):
    """Which version to return (unset: the latest)."""

    version: Annotated[int, msgspec.Meta(ge=1)] | None = None


class Registered(msgspec.Struct):
    """The version a registration stored (or found unchanged)."""

    workflow_id: str
    version: int


class Validation(msgspec.Struct):
    """Every problem of a definition, each with its path; none when it is valid."""

    valid: bool
    problems: list[Problem]


def list_(call: Call) -> VersionList:
    return VersionList(list(runtime.get().store.browse.workflows()))


def versions(call: Call) -> VersionList:
    found = runtime.get().store.browse.workflow_versions(call.path["workflow_id"])
    if not found:
        raise errors.UnknownWorkflow(f"no workflow {call.path['workflow_id']!r} is registered")
    return VersionList(list(found))


def get(call: Call) -> WorkflowOut:
    workflow_id = call.path["workflow_id"]
    version, workflow = runtime.get().store.workflow_version(workflow_id, call.query.version)
    return WorkflowOut(workflow_id, version, to_dict(workflow))


def register(call: Call) -> Registered:
    workflow_id, version = api.register_workflow(call.body)
    return Registered(workflow_id, version)


def validate(call: Call) -> Validation:
    rt = runtime.get()
    exists = lambda workflow_id: rt.store.latest_version(workflow_id) is not None  # noqa: E731
    try:
        validation.load_definition(call.body, workflow_exists=exists)
    except errors.DefinitionError as exc:
        return Validation(False, exc.problems)
    return Validation(True, [])


_ID = "/workflows/{workflow_id}"
TAG = "workflows"
# A definition is decoded as plain data so that validation can report every problem at
# once (decoding straight into the Workflow struct would stop at the first).
Definition = dict[str, Any]

OPERATIONS = [
    Operation(
        "GET",
        "/workflows",
        "listWorkflows",
        "The latest version of every workflow",
        list_,
        TAG,
        response=VersionList,
    ),
    Operation(
        "POST",
        "/workflows",
        "registerWorkflow",
        "Store a definition; a changed one becomes a new version",
        register,
        TAG,
        body=Definition,
        response=Registered,
        status=201,
        admin=True,
    ),
    Operation(
        "POST",
        "/workflows/validate",
        "validateWorkflow",
        "Check a definition and list every problem",
        validate,
        TAG,
        body=Definition,
        response=Validation,
    ),
    Operation(
        "GET",
        _ID,
        "getWorkflow",
        "A stored definition",
        get,
        TAG,
        query=VersionQuery,
        response=WorkflowOut,
    ),
    Operation(
        "GET",
        _ID + "/versions",
        "listVersions",
        "Every version, newest first",
        versions,
        TAG,
        response=VersionList,
    ),
]
