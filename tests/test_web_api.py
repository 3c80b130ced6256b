"""The HTTP API on the embedded twin: auth and tenants, pages, controls, values, events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import spane
from spane import runtime as runtime_module
from spane.runtime import Runtime
from tests.conftest import embedded_settings
from tests.webtools import Web

CHAIN = {
    "id": "chain",
    "nodes": [
        {"id": "first", "type": "echo"},
        {"id": "second", "type": "echo", "after": ["first"]},
    ],
}
PARKED = {
    "id": "parked",
    "nodes": [
        {"id": "start", "type": "echo"},
        {"id": "wait", "type": "delay", "after": ["start"], "config": {"duration": "1h"}},
        {"id": "end", "type": "echo", "after": ["wait"]},
    ],
}
FAILING = {
    "id": "failing",
    "nodes": [
        {"id": "boom", "type": "fail", "config": {"retryable": False, "message": "kaput"}},
    ],
}


@pytest.fixture
def web(rt: Runtime) -> Iterator[Web]:
    with Web(CHAIN, PARKED, FAILING) as client:
        yield client


def start(web: Web, workflow_id: str, tenant: str | None = None, **body: Any) -> str:
    response = web.call(
        "POST", "/executions", tenant=tenant, json={"workflow_id": workflow_id, **body}
    )
    assert response.status_code == 201, response.text
    execution_id: str = response.json()["execution_id"]
    return execution_id


def test_no_token_no_access_and_errors_are_json(web: Web) -> None:
    anonymous = web.client.get("/api/v1/executions")
    assert anonymous.status_code == 401
    assert "Authorization: Bearer" in anonymous.json()["message"]
    forged = web.client.get("/api/v1/workflows", headers={"Authorization": "Bearer spane_x_y"})
    assert forged.status_code == 401
    unknown = web.call("GET", "/executions/nope")
    assert unknown.status_code == 404 and "no execution has id" in unknown.json()["message"]
    route = web.call("GET", "/nothing-here")
    assert route.status_code == 404 and "openapi.json" in route.json()["message"]
    assert web.client.get("/api/v1/openapi.json").status_code == 200  # the document is public


def test_revoked_token_is_refused(web: Web) -> None:
    record, token = spane.tokens.create_token("acme")
    headers = {"Authorization": f"Bearer {token}"}
    assert web.client.get("/api/v1/me", headers=headers).json() == {
        "token_id": record.id,
        "tenant": "acme",
        "admin": False,
    }
    assert spane.tokens.revoke_token(record.id)
    assert web.client.get("/api/v1/me", headers=headers).status_code == 401


def test_a_tenant_token_sees_and_controls_only_its_tenant(web: Web) -> None:
    ours = start(web, "parked", tenant="acme")
    theirs = start(web, "parked", tenant="globex")
    listed = web.call("GET", "/executions", tenant="acme").json()["items"]
    assert [row["id"] for row in listed] == [ours]
    assert web.call("GET", f"/executions/{theirs}", tenant="acme").status_code == 404
    assert web.call("POST", f"/executions/{theirs}/cancel", tenant="acme").status_code == 404
    refused = web.call("GET", "/executions?tenant=globex", tenant="acme")
    assert refused.status_code == 403 and "acme" in refused.json()["message"]
    other = web.call(
        "POST", "/executions", tenant="acme", json={"workflow_id": "chain", "tenant": "globex"}
    )
    assert other.status_code == 403
    everything = web.call("GET", "/executions").json()["items"]
    assert {row["id"] for row in everything} == {ours, theirs}
    assert web.call("GET", "/executions?tenant=globex").json()["items"][0]["id"] == theirs
    cancelled = web.call("POST", f"/executions/{theirs}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    web.call("POST", f"/executions/{ours}/cancel", tenant="acme")


def test_register_needs_an_admin_token_and_validate_lists_every_problem(web: Web) -> None:
    definition = {"id": "new-one", "nodes": [{"id": "a", "type": "echo"}]}
    refused = web.call("POST", "/workflows", tenant="acme", json=definition)
    assert refused.status_code == 403
    created = web.call("POST", "/workflows", json=definition)
    assert created.status_code == 201 and created.json() == {
        "workflow_id": "new-one",
        "version": 1,
    }
    changed = {**definition, "description": "changed"}
    assert web.call("POST", "/workflows", json=changed).json()["version"] == 2
    versions = web.call("GET", "/workflows/new-one/versions").json()["items"]
    assert [v["version"] for v in versions] == [2, 1]
    first = web.call("GET", "/workflows/new-one?version=1", tenant="acme").json()
    assert first["definition"] == definition
    bad = {"id": "bad", "nodes": [{"id": "a", "type": "nope"}, {"id": "a", "type": "echo"}]}
    checked = web.call("POST", "/workflows/validate", json=bad).json()
    assert checked["valid"] is False and len(checked["problems"]) >= 2
    rejected = web.call("POST", "/workflows", json=bad)
    assert rejected.status_code == 422
    assert {p["path"] for p in rejected.json()["problems"]} >= {"nodes[0].type", "nodes[1].id"}
    assert web.call("GET", "/workflows/missing").status_code == 404


def test_bad_input_is_422_with_each_problem(web: Web) -> None:
    spane.register_workflow(
        {
            "id": "typed",
            "input_schema": {"type": "object", "required": ["order_id"]},
            "nodes": [{"id": "a", "type": "echo"}],
        }
    )
    response = web.call("POST", "/executions", json={"workflow_id": "typed", "input": {}})
    assert response.status_code == 422
    assert response.json()["problems"][0]["path"] == "input.order_id"
    wrong = web.call("POST", "/executions", json={"workflow": "typed"})
    assert wrong.status_code == 422 and "workflow" in wrong.json()["message"]


def test_cursor_pages_cover_every_execution_once(web: Web) -> None:
    started = {start(web, "chain", input=i) for i in range(5)}
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = web.call("GET", "/executions" + query).json()
        seen += [row["id"] for row in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 5 and set(seen) == started
    assert web.call("GET", "/executions?cursor=garbage").status_code == 422
    assert web.call("GET", "/executions?limit=0").status_code == 422


def test_controls_pause_resume_replay_rerun(web: Web) -> None:
    execution_id = start(web, "parked")
    body = web.wait(execution_id, ("running",))
    paused = web.call("POST", f"/executions/{execution_id}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    again = web.call("POST", f"/executions/{execution_id}/pause")
    assert again.status_code == 409 and "paused" in again.json()["message"]
    assert web.call("POST", f"/executions/{execution_id}/resume").json()["status"] == "running"
    assert web.call("POST", f"/executions/{execution_id}/cancel").json()["status"] == "cancelled"
    chained = start(web, "chain", input={"n": 1})
    assert web.wait(chained, ("completed",))["status"] == "completed"
    replayed = web.call("POST", f"/executions/{chained}/replay?from_node=second")
    assert replayed.status_code == 200, replayed.text
    assert web.wait(chained, ("completed",))["nodes"]["second"]["attempts"] == 2
    copy = web.call("POST", f"/executions/{chained}/rerun")
    assert copy.status_code == 201
    assert web.wait(copy.json()["execution_id"], ("completed",))["output"] == {"n": 1}
    assert body["workflow_id"] == "parked"


def test_dead_letters_are_scoped_and_retried(web: Web) -> None:
    failed = start(web, "failing", tenant="acme")
    assert web.wait(failed, ("failed",))["nodes"]["boom"]["error"].endswith("kaput")
    ours = web.call("GET", "/dead-letters", tenant="acme").json()["items"]
    assert [letter["execution_id"] for letter in ours] == [failed]
    assert web.call("GET", "/dead-letters", tenant="globex").json()["items"] == []
    letter_id = ours[0]["id"]
    assert web.call("GET", f"/dead-letters/{letter_id}", tenant="globex").status_code == 404
    retried = web.call("POST", f"/dead-letters/{letter_id}/retry", tenant="acme")
    assert retried.status_code == 200 and retried.json()["status"] == "retried"
    assert web.call("POST", f"/dead-letters/{letter_id}/retry").status_code == 409
    assert web.call("GET", "/dead-letters/999999").status_code == 404


def test_values_are_resolved_on_demand_and_capped(web: Web, rt: Runtime) -> None:
    big = "x" * (rt.settings.claim_check_bytes + 10)
    execution_id = start(web, "chain", input=big)
    web.wait(execution_id, ("completed",))
    full = web.call("GET", f"/executions/{execution_id}/nodes/second/output").json()
    assert full["offloaded"] and not full["truncated"] and full["text"] == f'"{big}"'
    cut = web.call("GET", f"/executions/{execution_id}/values/input?max_bytes=10").json()
    assert cut == {
        "bytes": len(big) + 2,
        "offloaded": True,
        "truncated": True,
        "text": '"xxxxxxxxx',
    }
    assert web.call("GET", f"/executions/{execution_id}/values/secret").status_code == 404
    rows = web.call("GET", f"/executions/{execution_id}/history").json()["items"]
    assert rows[0]["kind"] == "execution_started" and rows[-1]["kind"] == "execution_completed"


def test_execution_stream_sends_node_changes_until_the_end(web: Web) -> None:
    execution_id = start(web, "chain")
    web.wait(execution_id, ("completed",))
    headers = {"Authorization": f"Bearer {web.admin}"}
    url = f"/api/v1/streams/executions/{execution_id}"
    with web.client.stream("GET", url, headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    events = [block.split("\n")[0] for block in text.strip().split("\n\n")]
    assert events == ["event: node", "event: node", "event: execution"]
    assert '"status":"completed"' in text
    hidden = web.client.get(url, headers={"Authorization": f"Bearer {web.token('acme')}"})
    assert hidden.status_code == 404


def test_openapi_document_describes_every_operation(web: Web) -> None:
    document = web.client.get("/api/v1/openapi.json").json()
    schemas = document["components"]["schemas"]
    operations = [op for path in document["paths"].values() for op in path.values()]
    assert len({op["operationId"] for op in operations}) == len(operations) >= 20
    text = str(document)
    for name in [part.split("'")[0] for part in text.split("#/components/schemas/")[1:]]:
        assert name in schemas
    listing = document["paths"]["/api/v1/executions"]["get"]
    status = next(p for p in listing["parameters"] if p["name"] == "status")
    assert sorted(status["schema"]["enum"]) == [
        "cancelled",
        "completed",
        "failed",
        "paused",
        "running",
    ]


def test_list_stream_sends_the_newest_executions_of_the_callers_tenant(web: Web) -> None:
    ours = start(web, "chain", tenant="acme")
    start(web, "chain", tenant="globex")
    headers = {"Authorization": f"Bearer {web.token('acme')}"}
    with web.client.stream("GET", "/api/v1/streams/executions", headers=headers) as response:
        lines = response.iter_lines()
        first = [next(lines), next(lines)]
    assert first[0] == "event: execution"
    assert f'"id":"{ours}"' in first[1] and '"tenant":"acme"' in first[1]


def test_bodies_over_the_payload_limit_are_refused_unread(tmp_path: Path) -> None:
    small = Runtime(embedded_settings(tmp_path, max_payload_bytes=200))
    old = runtime_module.install(small)
    web = Web()
    try:
        big = {"workflow_id": "chain", "input": "x" * 500}
        response = web.call("POST", "/executions", json=big)
        assert response.status_code == 413
        assert "SPANE_MAX_PAYLOAD_BYTES=200" in response.json()["message"]
        hook = web.client.post("/hooks/anything", content=b"y" * 500)
        assert hook.status_code == 413
    finally:
        web.close()
        runtime_module.install(old)
        small.close()
