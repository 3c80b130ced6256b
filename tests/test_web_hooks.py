"""Webhook triggers: signatures, idempotency keys, input mapping and refusals."""

from __future__ import annotations

import time
from collections.abc import Iterator

import msgspec
import pytest

import spane
from spane.runtime import Runtime
from spane.signatures import sign
from tests.webtools import Web

SECRET = "s3cret-for-tests"


@pytest.fixture
def web(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[Web]:
    monkeypatch.setenv("ORDERS_HOOK_SECRET", SECRET)
    spane.register_workflow(
        {
            "id": "orders",
            "input_schema": {
                "type": "object",
                "required": ["order_id"],
                "properties": {"order_id": {"type": "string"}},
            },
            "triggers": [
                {
                    "webhook": {
                        "path": "shop/orders",
                        "secret_env": "ORDERS_HOOK_SECRET",
                        "input": "{order_id: data.id, total: data.total}",
                        "tenant": "acme",
                    }
                }
            ],
            "nodes": [{"id": "take", "type": "echo"}],
        }
    )
    spane.register_workflow(
        {
            "id": "unsigned",
            "triggers": [{"webhook": {"path": "plain", "tenant": "acme"}}],
            "nodes": [{"id": "take", "type": "echo"}],
        }
    )
    client = Web()
    try:
        yield client
    finally:
        client.close()


def post(web: Web, body: bytes, signature: str | None, **headers: str) -> tuple[int, dict]:
    if signature is not None:
        headers["Spane-Signature"] = signature
    response = web.client.post("/hooks/shop/orders", content=body, headers=headers)
    return response.status_code, response.json()


def test_a_signed_hook_starts_the_workflow_with_the_mapped_input(web: Web) -> None:
    body = msgspec.json.encode({"data": {"id": "A-1", "total": 12}, "noise": True})
    status, answer = post(web, body, sign(SECRET, body))
    assert status == 202
    execution = spane.wait(answer["execution_id"], timeout=30)
    assert execution.tenant == "acme"
    assert execution.output == {"order_id": "A-1", "total": 12}


def test_bad_signatures_are_401(web: Web) -> None:
    body = b'{"data": {"id": "A-2"}}'
    now = int(time.time())
    assert post(web, body, None)[0] == 401
    assert post(web, body, sign("wrong", body))[0] == 401
    assert post(web, body + b" ", sign(SECRET, body))[0] == 401
    stale = post(web, body, sign(SECRET, body, now - 3600))
    assert stale[0] == 401 and "clock" in stale[1]["message"]
    assert post(web, body, "v1=abc")[0] == 401
    rotated = f"{sign(SECRET, body, now)},v1={'0' * 64}"
    assert post(web, body, rotated)[0] == 202
    assert spane.list_executions(tenant="acme")  # only the good one started


def test_the_idempotency_key_starts_one_execution(web: Web) -> None:
    body = b'{"data": {"id": "A-3"}}'
    first = post(web, body, sign(SECRET, body), **{"Idempotency-Key": "delivery-7"})
    again = post(web, body, sign(SECRET, body), **{"Idempotency-Key": "delivery-7"})
    assert first[0] == again[0] == 202
    assert first[1]["execution_id"] == again[1]["execution_id"]
    assert len(spane.list_executions(workflow_id="orders")) == 1


def test_bad_bodies_are_422_with_the_validation_errors(web: Web) -> None:
    not_json = b"<xml/>"
    status, answer = post(web, not_json, sign(SECRET, not_json))
    assert status == 422 and answer["problems"][0]["path"] == "body"
    missing = b'{"data": {"total": 3}}'
    status, answer = post(web, missing, sign(SECRET, missing))
    assert status == 422
    assert [p["path"] for p in answer["problems"]] == ["input.order_id"]
    assert spane.list_executions() == []


def test_unset_secret_unknown_path_and_unsigned_hooks(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b'{"data": {"id": "A-4"}}'
    assert web.client.post("/hooks/nowhere", content=body).status_code == 404
    anonymous = web.client.post("/hooks/plain", content=body)
    assert anonymous.status_code == 401
    other = {"Authorization": f"Bearer {web.token('globex')}"}
    assert web.client.post("/hooks/plain", content=body, headers=other).status_code == 403
    ours = {"Authorization": f"Bearer {web.token('acme')}"}
    assert web.client.post("/hooks/plain", content=body, headers=ours).status_code == 202
    monkeypatch.delenv("ORDERS_HOOK_SECRET")
    status, answer = post(web, body, sign(SECRET, body))
    assert status == 503 and "ORDERS_HOOK_SECRET" in answer["message"]


@pytest.mark.parametrize(
    ("hook", "message"),
    [
        ({"path": "/lead"}, "may hold only"),
        ({"path": "a b"}, "may hold only"),
        ({"path": "x", "secret_env": "1BAD"}, "environment variable"),
        ({"path": "x", "input": "[["}, "JMESPath"),
        ({"path": "x", "tenant": "bad tenant"}, "tenant"),
    ],
)
def test_webhook_definitions_are_checked(rt: Runtime, hook: dict, message: str) -> None:
    definition = {
        "id": "w",
        "triggers": [{"webhook": hook}],
        "nodes": [{"id": "a", "type": "noop"}],
    }
    with pytest.raises(spane.DefinitionError, match=message):
        spane.register_workflow(definition)


def test_a_webhook_path_serves_one_workflow(web: Web) -> None:
    taken = {
        "id": "copycat",
        "triggers": [{"webhook": {"path": "plain"}}],
        "nodes": [{"id": "a", "type": "noop"}],
    }
    with pytest.raises(spane.DefinitionError, match="already served by workflow 'unsigned'"):
        spane.register_workflow(taken)
    spane.register_workflow({"id": "unsigned", "nodes": [{"id": "a", "type": "noop"}]})
    spane.register_workflow(taken)  # the path is free once the owner's latest version drops it
