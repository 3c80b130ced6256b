"""The HTTP API over batches, delayed starts, signals, schedules and circuit breakers, and
their dashboard pages, on the embedded twin: tenant scoping and JSON errors included."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import spane
from spane.runtime import Runtime
from tests.webtools import Web

CHAIN = {"id": "chain", "nodes": [{"id": "a", "type": "echo"}]}
ORDER = {
    "id": "order",
    "input_schema": {"type": "object", "required": ["order_id"]},
    "nodes": [{"id": "echo", "type": "echo"}],
}
APPROVAL = {
    "id": "approval",
    "nodes": [
        {"id": "ask", "type": "wait_for", "config": {"signal": "approve"}},
        {"id": "done", "type": "transform", "after": ["ask"], "config": {"expression": "@"}},
    ],
}
TIMEOUT = 30
SERVICE = {"up": False}


@spane.node_type(
    "web_guarded", breaker=spane.Breaker(fail_max=1, reset_timeout="1h"), retry={"max_attempts": 1}
)
def web_guarded(ctx: spane.NodeContext) -> Any:
    if not SERVICE["up"]:
        raise RuntimeError("service down")
    return {"ok": True}


@pytest.fixture
def web(rt: Runtime) -> Iterator[Web]:
    with Web(CHAIN, ORDER, APPROVAL) as client:
        yield client


def error(response: Any, status: int, text: str) -> None:
    """The response is the error ``status`` whose JSON message says ``text``."""
    assert response.status_code == status, response.text
    assert text in response.json()["message"], response.json()


def ids(web: Web, tenant: str | None = None) -> set[str]:
    return {row["id"] for row in web.call("GET", "/executions", tenant=tenant).json()["items"]}


def test_batch_start_is_all_or_none_and_scoped(web: Web) -> None:
    body = {"workflow_id": "order", "inputs": [{"order_id": i} for i in range(3)]}
    started = web.call("POST", "/executions/batch", tenant="acme", json=body)
    assert started.status_code == 201, started.text
    batch = started.json()["execution_ids"]
    assert len(batch) == 3 and ids(web, "acme") == set(batch) and ids(web, "globex") == set()
    outputs = [web.wait(i, ("completed",))["output"] for i in batch]
    assert outputs == [{"order_id": i} for i in range(3)]
    refused = web.call(
        "POST", "/executions/batch", json={"workflow_id": "order", "inputs": [{"order_id": 1}, {}]}
    )
    error(refused, 422, "inputs[1]")
    assert len(ids(web)) == 3  # nothing of the refused batch started
    other = {**body, "tenant": "globex"}
    error(web.call("POST", "/executions/batch", tenant="acme", json=other), 403, "acme")
    empty = {"workflow_id": "order", "inputs": []}
    error(web.call("POST", "/executions/batch", json=empty), 422, "inputs")
    missing = {"workflow_id": "nope", "inputs": [1]}
    error(web.call("POST", "/executions/batch", json=missing), 404, "nope")


def test_start_later_with_delay_or_at(web: Web, rt: Runtime) -> None:
    later = web.call("POST", "/executions", json={"workflow_id": "chain", "delay": "1h"})
    assert later.status_code == 201, later.text
    waiting = later.json()["execution_id"]
    assert web.call("GET", f"/executions/{waiting}").status_code == 404  # not started yet
    (due,) = rt.store.due_delayed_starts(time.time() + 2 * 3600)
    assert due.id == waiting and due.start_at > time.time() + 3500
    soon = {"workflow_id": "chain", "input": {"n": 1}, "at": time.time() + 0.2}
    started = web.call("POST", "/executions", tenant="acme", json=soon).json()["execution_id"]
    spane.wait(started, timeout=TIMEOUT)  # waits for the start, then the end
    done = web.call("GET", f"/executions/{started}").json()
    assert (done["status"], done["tenant"], done["output"]) == ("completed", "acme", {"n": 1})
    iso = {"workflow_id": "chain", "at": "2030-01-01T00:00:00+00:00"}
    assert web.call("POST", "/executions", json=iso).status_code == 201
    both = {"workflow_id": "chain", "delay": "1h", "at": time.time()}
    error(web.call("POST", "/executions", json=both), 422, "either delay or at")
    naive = {"workflow_id": "chain", "at": "2030-01-01T00:00:00"}
    error(web.call("POST", "/executions", json=naive), 422, "timezone-aware")
    error(
        web.call("POST", "/executions", json={"workflow_id": "chain", "delay": "soon"}), 422, "30s"
    )


def test_signal_completes_a_waiting_node_once_and_is_scoped(web: Web) -> None:
    started = web.call("POST", "/executions", tenant="acme", json={"workflow_id": "approval"})
    execution_id = started.json()["execution_id"]
    path = f"/executions/{execution_id}/signals/approve"
    hidden = web.call("POST", path, tenant="globex", json={"payload": 1})
    error(hidden, 404, "no execution has id")
    sent = web.call("POST", path, tenant="acme", json={"payload": {"ok": 1}, "signal_id": "s1"})
    assert sent.status_code == 202, sent.text
    assert sent.json() == {"execution_id": execution_id, "name": "approve", "stored": True}
    done = web.wait(execution_id, ("completed",), timeout=TIMEOUT)
    assert done["output"] == {"ok": 1}
    again = web.call("POST", path, json={"payload": 2, "signal_id": "s1"})
    assert again.status_code == 202 and again.json()["stored"] is False
    error(web.call("POST", path, json={"payload": 3}), 409, "takes no more signals")
    bad = web.call("POST", f"/executions/{execution_id}/signals/bad name", json={})
    error(bad, 422, "signal name")
    error(web.call("POST", path, json={"payload": 1, "extra": 2}), 422, "extra")


def test_schedules_are_per_tenant_and_controlled(web: Web) -> None:
    body = {"workflow_id": "chain", "input": {"n": 1}, "every": "1h", "schedule_id": "hourly"}
    created = web.call("POST", "/schedules", tenant="acme", json=body)
    assert created.status_code == 201, created.text
    made = created.json()
    assert (made["id"], made["tenant"], made["every"], made["paused"]) == (
        "hourly",
        "acme",
        3600.0,
        False,
    )
    assert time.time() < made["next_at"] <= time.time() + 3600 and made["origin"] == "api"
    assert [s["id"] for s in web.call("GET", "/schedules", tenant="acme").json()["items"]] == [
        "hourly"
    ]
    assert web.call("GET", "/schedules", tenant="globex").json()["items"] == []
    error(web.call("GET", "/schedules?tenant=acme", tenant="globex"), 403, "globex")
    assert len(web.call("GET", "/schedules?workflow_id=chain").json()["items"]) == 1
    for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/pause"), ("POST", "/trigger")):
        error(web.call(method, "/schedules/hourly" + suffix, tenant="globex"), 404, "hourly")
    error(web.call("POST", "/schedules", tenant="globex", json=body), 409, "taken")
    paused = web.call("POST", "/schedules/hourly/pause", tenant="acme").json()
    assert paused["paused"] is True
    assert web.call("GET", "/schedules/hourly").json()["paused"] is True
    assert web.call("POST", "/schedules/hourly/resume", tenant="acme").json()["paused"] is False
    triggered = web.call("POST", "/schedules/hourly/trigger", tenant="acme")
    assert triggered.status_code == 200, triggered.text
    execution_id = triggered.json()["execution_id"]
    done = web.wait(execution_id, ("completed",), timeout=TIMEOUT)
    assert (done["tenant"], done["output"]) == ("acme", {"n": 1})
    assert web.call("GET", "/schedules/hourly").json()["last_execution_id"] == execution_id
    assert web.call("DELETE", "/schedules/hourly", tenant="acme").status_code == 204
    error(web.call("GET", "/schedules/hourly"), 404, "no schedule has id 'hourly'")


def test_schedule_errors_are_json_with_a_message(web: Web) -> None:
    cron = {"workflow_id": "chain", "cron": "0 7 * * 1"}
    made = web.call("POST", "/schedules", json=cron).json()
    assert (made["id"], made["cron"], made["tenant"]) == ("chain:api", "0 7 * * 1", "default")
    both = {**cron, "every": "1h"}
    error(web.call("POST", "/schedules", json=both), 422, "exactly one of")
    bad = {"workflow_id": "chain", "cron": "61 * * * *"}
    error(web.call("POST", "/schedules", json=bad), 422, "not valid")
    error(web.call("POST", "/schedules", json={"workflow_id": "nope", "every": 60}), 404, "nope")
    refused = {"workflow_id": "order", "every": 60, "input": {}}
    error(web.call("POST", "/schedules", json=refused), 422, "order_id")
    policy = {"workflow_id": "chain", "every": 60, "overlap": "sometimes"}
    error(web.call("POST", "/schedules", json=policy), 422, "overlap")
    other = {"workflow_id": "chain", "every": 60, "tenant": "globex"}
    error(web.call("POST", "/schedules", tenant="acme", json=other), 403, "acme")


def test_breakers_are_listed_and_reset_by_admins_only(web: Web) -> None:
    SERVICE["up"] = False
    spane.register_workflow({"id": "guarded", "nodes": [{"id": "call", "type": "web_guarded"}]})
    assert spane.run("guarded", {}, timeout=TIMEOUT).status == "failed"
    (listed,) = web.call("GET", "/breakers", tenant="acme").json()["items"]
    assert (listed["name"], listed["state"], listed["failures"]) == ("web_guarded", "open", 1)
    assert listed["closes_at"] > time.time()
    error(web.call("POST", "/breakers/web_guarded/reset", tenant="acme"), 403, "admin")
    reset = web.call("POST", "/breakers/web_guarded/reset")
    assert reset.status_code == 200, reset.text
    assert (reset.json()["state"], reset.json()["failures"]) == ("closed", 0)
    assert spane.breakers()[0].state == "closed"
    error(web.call("POST", "/breakers/nope/reset"), 404, "nope")


def test_workers_are_listed_for_any_token(web: Web) -> None:
    spane.run("chain", {}, timeout=TIMEOUT)  # the embedded worker registers on start
    (worker,) = web.call("GET", "/workers", tenant="acme").json()["items"]
    (known,) = spane.workers()
    assert (worker["id"], worker["pid"], worker["threads"]) == (known.id, known.pid, known.threads)
    assert "echo" in worker["node_types"] and worker["lanes"] == ["high", "default", "low"]
    assert web.client.get("/api/v1/workers").status_code == 401
    headers = {"Authorization": f"Bearer {web.token('acme')}"}
    page = web.client.get("/ui/workers", headers=headers)
    assert page.status_code == 200, page.text
    assert f'data-worker="{known.id}"' in page.text and "status-running" in page.text


def test_schedules_and_breakers_pages(web: Web) -> None:
    spane.schedule("chain", every="1h", tenant="acme", schedule_id="ours")
    spane.schedule("chain", every="2h", tenant="globex", schedule_id="theirs")
    spane.pause_schedule("theirs")
    spane.register_workflow({"id": "guarded", "nodes": [{"id": "call", "type": "web_guarded"}]})
    spane.run("guarded", {}, timeout=TIMEOUT)

    def get(path: str, tenant: str | None = None) -> str:
        headers = {"Authorization": f"Bearer {web.token(tenant)}"}
        response = web.client.get(path, headers=headers)
        assert response.status_code == 200, response.text
        return response.text

    mine = get("/ui/schedules", "acme")
    assert 'data-schedule="ours"' in mine and "theirs" not in mine
    assert 'data-action="pause"' in mine and 'data-action="trigger"' in mine
    everything = get("/ui/schedules")
    assert 'data-schedule="theirs"' in everything and 'data-action="resume"' in everything
    assert 'href="/ui/breakers"' in everything  # linked from the nav
    breakers = get("/ui/breakers")
    assert 'data-breaker="web_guarded"' in breakers and 'data-action="reset"' in breakers
    assert 'data-status="open"' in breakers
    assert 'data-action="reset"' not in get("/ui/breakers", "acme")


def test_openapi_document_describes_the_new_operations(web: Web) -> None:
    document = web.client.get("/api/v1/openapi.json").json()
    paths = document["paths"]
    names = {
        path: sorted(op["operationId"] for op in operations.values())
        for path, operations in paths.items()
    }
    assert names["/api/v1/executions/batch"] == ["startExecutions"]
    assert names["/api/v1/executions/{execution_id}/signals/{name}"] == ["sendSignal"]
    assert names["/api/v1/schedules"] == ["createSchedule", "listSchedules"]
    assert names["/api/v1/schedules/{schedule_id}"] == ["deleteSchedule", "getSchedule"]
    assert names["/api/v1/breakers/{name}/reset"] == ["resetBreaker"]
    start = document["components"]["schemas"]["StartRequest"]["properties"]
    assert {"type": "string", "format": "date-time"} in start["at"]["anyOf"]
    request = document["components"]["schemas"]["ScheduleRequest"]["properties"]
    assert sorted(request["overlap"]["enum"]) == ["allow", "cancel_previous", "skip"]
