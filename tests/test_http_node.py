"""The built-in ``http`` node type against a real local HTTP service (embedded twin)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog

import spane
from spane import runtime as runtime_module
from spane.builtins import http as http_node
from spane.runtime import Runtime
from spane.settings import from_env
from tests.conftest import embedded_settings
from tests.history import events
from tests.httpserver import Service, downstream

__all__ = ["downstream"]
TIMEOUT = 30
TOKEN = "s3cr3t-token-value"


def _workflow(url: str, **config: object) -> dict[str, object]:
    node = {"id": "call", "type": "http", "config": {"url": url, **config}}
    return {"id": "caller", "nodes": [node]}


def test_request_is_built_from_the_input(
    rt: Runtime, downstream: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAYMENTS_TOKEN", TOKEN)
    spane.register_workflow(
        _workflow(
            downstream.url + "/orders/{order.id}/pay",
            method="POST",
            headers={"Authorization": "Bearer ${env:PAYMENTS_TOKEN}", "X-Tenant": "{tenant}"},
            query={"currency": "{order.currency}"},
            body="{amount: order.total}",
            idempotency_key=True,
            response_headers=["X-Served-By"],
        )
    )
    order = {"id": "A 1", "currency": "EUR", "total": 250}
    ex = spane.run("caller", {"order": order, "tenant": "acme"}, timeout=TIMEOUT)
    assert ex.status == "completed", ex.error
    assert ex.output == {
        "status": 200,
        "headers": {"x-served-by": "test-service"},
        "body": {
            "path": "/orders/A%201/pay?currency=EUR",
            "method": "POST",
            "body": '{"amount":250}',
        },
    }
    (seen,) = downstream.requests("/orders/A%201/pay")
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["X-Tenant"] == "acme"
    assert seen.headers["Idempotency-Key"] == f"{ex.id}:call"
    stored = spane.get_execution(ex.id)
    assert TOKEN not in repr(stored) and "${env:PAYMENTS_TOKEN}" in repr(
        rt.store.load_workflow("caller")
    )


def test_secrets_never_reach_errors_or_history(
    rt: Runtime, downstream: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_KEY", TOKEN)
    downstream.set("/lookup", status=400)  # the body echoes the path, secret and all
    spane.register_workflow(_workflow(downstream.url + "/lookup", query={"key": "${env:API_KEY}"}))
    with structlog.testing.capture_logs() as logs:
        ex = spane.run("caller", {}, timeout=TIMEOUT)
    assert any(line["event"] == "http response" for line in logs)
    assert TOKEN not in repr(logs)
    assert ex.status == "failed"
    error = ex.nodes["call"].error or ""
    assert "answered 400 (not expected)" in error and "key=***" in error
    everything = repr(spane.get_execution(ex.id)) + repr(spane.history(ex.id))
    everything += repr(spane.dead_letters())
    assert TOKEN not in everything
    assert len(downstream.requests("/lookup")) == 1  # a 400 is not retried


def test_missing_secret_fails_the_node_naming_the_variable(
    rt: Runtime, downstream: Service
) -> None:
    spane.register_workflow(
        _workflow(downstream.url, headers={"Authorization": "Bearer ${env:SPANE_TEST_UNSET}"})
    )
    ex = spane.run("caller", {}, timeout=TIMEOUT)
    assert ex.status == "failed"
    assert "environment variable SPANE_TEST_UNSET is not set" in (ex.nodes["call"].error or "")
    assert not downstream.requests()


def test_definitions_refuse_other_schemes_and_stored_credentials(rt: Runtime) -> None:
    with pytest.raises(spane.DefinitionError) as refused:
        spane.register_workflow(_workflow("file:///etc/passwd"))
    assert "url must start with http:// or https://" in str(refused.value)
    with pytest.raises(spane.DefinitionError) as refused:
        spane.register_workflow(
            _workflow("https://api.example.com", headers={"Authorization": "Bearer abc"})
        )
    assert "write it as ${env:NAME}" in str(refused.value)


@pytest.fixture
def allow_list(tmp_path: Path) -> Iterator[Runtime]:
    """An embedded runtime whose ``http`` nodes may call api.example.com only."""
    runtime = Runtime(embedded_settings(tmp_path, http_allowed_hosts=("api.example.com",)))
    old = runtime_module.install(runtime)
    try:
        yield runtime
    finally:
        runtime_module.install(old)
        runtime.close()
        http_node.configure(())


def test_hosts_outside_the_allow_list_are_refused(allow_list: Runtime, downstream: Service) -> None:
    spane.register_workflow(_workflow(downstream.url + "/internal"))
    ex = spane.run("caller", {}, timeout=TIMEOUT)
    assert ex.status == "failed"
    assert "'127.0.0.1' is not in SPANE_HTTP_ALLOWED_HOSTS" in (ex.nodes["call"].error or "")
    assert not downstream.requests()


def test_retry_statuses_retry_and_429_with_retry_after_defers(
    rt: Runtime, downstream: Service
) -> None:
    downstream.set("/flaky", status=503, times=1)
    downstream.set("/busy", status=429, retry_after="1", times=1)
    retry = {"max_attempts": 2, "delay": "10ms"}
    node = {
        "id": "flaky",
        "type": "http",
        "retry": retry,
        "config": {"url": downstream.url + "/flaky"},
    }
    busy = {"url": downstream.url + "/busy"}
    spane.register_workflow(
        {
            "id": "statuses",
            "nodes": [
                node,
                {"id": "busy", "type": "http", "retry": {"max_attempts": 1}, "config": busy},
            ],
        }
    )
    ex = spane.run("statuses", {}, timeout=TIMEOUT)
    assert ex.status == "completed", ex.error
    assert [e.kind for e in events(ex.id, "flaky") if e.kind == "retrying"] == ["retrying"]
    (deferred,) = events(ex.id, "busy", "deferred")
    assert deferred.detail == "HTTP 429 from 127.0.0.1: Retry-After 1s"
    first, second = (s.at for s in downstream.requests("/busy"))
    assert second - first >= 1.0


def test_connection_errors_are_retried(rt: Runtime) -> None:
    retry = {"max_attempts": 2, "delay": "10ms"}
    node = {"id": "call", "type": "http", "retry": retry, "config": {"url": "http://127.0.0.1:9/"}}
    spane.register_workflow({"id": "caller", "nodes": [node]})
    ex = spane.run("caller", {}, timeout=TIMEOUT)
    assert ex.status == "failed" and "ConnectError" in (ex.nodes["call"].error or "")
    assert len(events(ex.id, "call", "retrying")) == 1


def test_allow_list_entries() -> None:
    env = {"SPANE_HTTP_ALLOWED_HOSTS": " API.example.com, *.pay.example.org ,127.0.0.1:8080"}
    hosts = from_env(env).http_allowed_hosts
    assert hosts == ("api.example.com", "*.pay.example.org", "127.0.0.1:8080")
    http_node.configure(hosts)
    try:
        allowed = [
            "https://api.example.com/x",
            "https://eu.pay.example.org/",
            "http://127.0.0.1:8080/",
        ]
        refused = [
            "https://example.com/",
            "https://pay.example.org/",  # the wildcard is for subdomains
            "http://127.0.0.1:8081/",
            "http://169.254.169.254/latest/meta-data",
        ]
        assert all(http_node._allowed(httpx.URL(u)) for u in allowed)
        assert not any(http_node._allowed(httpx.URL(u)) for u in refused)
    finally:
        http_node.configure(())
