"""The API fuzzed from its own OpenAPI document: no request makes it fail with a 500,
and every error is JSON with a message."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.schemas import APIOperation

import spane
from spane import tokens
from spane.runtime import Runtime
from spane.web import create_app

schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", create_app())
# Streams last until their execution ends; they are covered in test_web_api.py.
schema = schema.exclude(path_regex="^/api/v1/streams/")


@pytest.fixture
def admin(rt: Runtime) -> Iterator[str]:
    spane.register_workflow({"id": "chain", "nodes": [{"id": "a", "type": "echo"}]})
    spane.enqueue_workflow("chain", {"n": 1})
    yield tokens.create_token(None)[1]


#: One test per operation, each with an id of its own (``GET /api/v1/me``): the ids keep
#: the operations apart when the suite is spread over processes.
OPERATIONS = [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
def test_no_server_errors_and_json_errors(operation: APIOperation, admin: str) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=3,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        response = case.call(headers={"Authorization": f"Bearer {admin}"})
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            body = response.json()
            assert isinstance(body["message"], str) and body["message"]

    check()
