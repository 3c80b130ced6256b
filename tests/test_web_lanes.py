"""``GET /api/v1/lanes`` and the Lanes page on the embedded twin: counts per lane and
tenant, tenant scoping, and the OpenAPI types."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import spane
from spane import runtime as runtime_module
from spane.runtime import Runtime
from tests.conftest import embedded_settings
from tests.webtools import Web

NAP = {"id": "nap", "nodes": [{"id": "step", "type": "sleep", "config": {"seconds": 3}}]}


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Web]:
    """One worker thread, busy with acme's first node while the rest wait."""
    import tests.nodes  # noqa: F401

    rt = Runtime(embedded_settings(tmp_path, embedded_threads=1))
    old = runtime_module.install(rt)
    spane.register_workflow(NAP)
    client = Web()
    try:
        running = spane.enqueue_workflow("nap", 1, tenant="acme", priority="low")
        spane.enqueue_workflow("nap", 2, tenant="acme", priority="low")
        spane.enqueue_workflow("nap", 3, tenant="globex", priority="low")
        deadline = time.monotonic() + 30
        while spane.get_execution(running).nodes["step"].status != "running":
            assert time.monotonic() < deadline, "the first node never started"
            time.sleep(0.05)
        yield client
    finally:
        client.close()
        runtime_module.install(old)
        rt.close()


def test_lanes_count_work_per_tenant_and_scope_tenant_tokens(web: Web) -> None:
    everything = web.call("GET", "/lanes")
    assert everything.status_code == 200, everything.text
    lanes = {lane["lane"]: lane for lane in everything.json()["items"]}
    assert list(lanes) == ["high", "default", "low"]
    assert lanes["high"]["tenants"] == [] and lanes["default"]["tenants"] == []
    assert (lanes["low"]["workers"], lanes["low"]["threads"]) == (1, 1)
    acme, globex = lanes["low"]["tenants"]
    assert (acme["tenant"], acme["ready"], acme["in_flight"]) == ("acme", 1, 1)
    assert (globex["tenant"], globex["ready"], globex["in_flight"]) == ("globex", 1, 0)
    assert 0 <= acme["oldest_wait"] < 30 and 0 <= globex["oldest_wait"] < 30

    (low,) = [x for x in web.call("GET", "/lanes", tenant="globex").json()["items"] if x["tenants"]]
    assert [t["tenant"] for t in low["tenants"]] == ["globex"]
    other = web.call("GET", "/lanes?tenant=acme", tenant="globex")
    assert other.status_code == 403 and "globex" in other.json()["message"]
    only = web.call("GET", "/lanes?tenant=acme").json()["items"]
    assert [t["tenant"] for x in only for t in x["tenants"]] == ["acme"]
    assert web.client.get("/api/v1/lanes").status_code == 401


def test_lanes_page_shows_each_lane_and_only_the_tokens_tenant(web: Web) -> None:
    def get(tenant: str | None = None) -> str:
        headers = {"Authorization": f"Bearer {web.token(tenant)}"}
        response = web.client.get("/ui/lanes", headers=headers)
        assert response.status_code == 200, response.text
        return response.text

    everything = get()
    for lane in ("high", "default", "low"):
        assert f'data-lane="{lane}"' in everything
    assert 'data-tenant="acme"' in everything and 'data-tenant="globex"' in everything
    assert 'href="/ui/lanes"' in everything  # linked from the nav
    mine = get("globex")
    assert 'data-tenant="globex"' in mine and "acme" not in mine


def test_openapi_document_types_the_lanes_operation(web: Web) -> None:
    document = web.client.get("/api/v1/openapi.json").json()
    (operation,) = document["paths"]["/api/v1/lanes"].values()
    assert operation["operationId"] == "listLanes"
    schemas = document["components"]["schemas"]
    load = schemas["TenantLoadOut"]["properties"]
    assert set(load) == {"tenant", "ready", "in_flight", "limited", "oldest_wait"}
    assert set(schemas["LaneOut"]["properties"]) == {"lane", "workers", "threads", "tenants"}
