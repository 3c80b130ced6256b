"""Completion callbacks: posted at least once per end, signed, with one idempotency key."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec
import pytest

import spane
from spane import callbacks, signatures
from spane.runtime import Runtime

SECRET = "callback-secret"


class Receiver:
    """A local HTTP endpoint that records posts and answers with planned statuses."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append((dict(self.headers), data))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/done"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.posts) < count:
            assert time.monotonic() < deadline, f"{len(self.posts)} posts, expected {count}"
            time.sleep(0.02)

    def body(self, index: int) -> Any:
        return msgspec.json.decode(self.posts[index][1])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    try:
        yield endpoint
    finally:
        endpoint.server.shutdown()
        endpoint.server.server_close()


def workflow(receiver: Receiver, **on_finish: str) -> dict[str, Any]:
    definition: dict[str, Any] = {"id": "notified", "nodes": [{"id": "a", "type": "add_one"}]}
    definition["on_finish"] = {"url": receiver.url, **on_finish}
    return definition


def history_kinds(execution_id: str) -> list[str]:
    return [e.kind for e in spane.history(execution_id) if e.kind.startswith("callback")]


def until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_end_is_posted_once_signed_with_an_idempotency_key(
    rt: Runtime, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLBACK_SECRET", SECRET)
    spane.register_workflow(workflow(receiver, secret_env="CALLBACK_SECRET"))
    execution = spane.run("notified", 41, timeout=30)
    receiver.wait_for(1)
    until(lambda: history_kinds(execution.id) == ["callback_sent"])
    time.sleep(0.3)  # several more sweeps: nothing is posted twice once sent
    assert len(receiver.posts) == 1
    headers, data = receiver.posts[0]
    assert signatures.check(SECRET, headers["Spane-Signature"], data, tolerance=60) is None
    assert execution.finished_at is not None
    assert headers["Idempotency-Key"] == f"{execution.id}:{round(execution.finished_at * 1000)}"
    assert receiver.body(0) == {
        "execution_id": execution.id,
        "workflow_id": "notified",
        "version": 1,
        "tenant": "default",
        "status": "completed",
        "error": None,
        "finished_at": execution.finished_at,
        "output": 42,
        "output_offloaded": False,
    }


def test_failed_posts_are_retried_with_the_same_key(backend: Runtime, receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    spane.register_workflow(workflow(receiver))
    execution = spane.run("notified", 1, timeout=30)
    receiver.wait_for(3)
    until(lambda: history_kinds(execution.id)[-1:] == ["callback_sent"])
    assert history_kinds(execution.id) == [
        "callback_retrying",
        "callback_retrying",
        "callback_sent",
    ]
    keys = {headers["Idempotency-Key"] for headers, _ in receiver.posts}
    assert len(keys) == 1 and "Spane-Signature" not in receiver.posts[0][0]


def test_a_callback_is_given_up_after_the_last_try(
    rt: Runtime, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(callbacks, "MAX_ATTEMPTS", 1)
    receiver.statuses = [500]
    spane.register_workflow(workflow(receiver))
    execution = spane.run("notified", 1, timeout=30)
    until(lambda: history_kinds(execution.id) == ["callback_failed"])
    time.sleep(0.3)
    assert len(receiver.posts) == 1


def test_per_start_callback_failure_and_replay_post_each_end(
    rt: Runtime, receiver: Receiver
) -> None:
    spane.register_workflow(
        {
            "id": "flaky",
            "nodes": [{"id": "boom", "type": "fail", "config": {"retryable": False}}],
        }
    )
    execution_id = spane.enqueue_workflow("flaky", None, on_finish={"url": receiver.url})
    receiver.wait_for(1)
    assert receiver.body(0)["status"] == "failed"
    assert "planned failure" in receiver.body(0)["error"]
    spane.replay(execution_id)
    receiver.wait_for(2)
    assert receiver.body(1)["status"] == "failed"
    keys = [headers["Idempotency-Key"] for headers, _ in receiver.posts]
    assert keys[0] != keys[1]


def test_a_workflow_without_callback_posts_nothing(rt: Runtime, receiver: Receiver) -> None:
    spane.register_workflow({"id": "quiet", "nodes": [{"id": "a", "type": "noop"}]})
    spane.run("quiet", None, timeout=30)
    time.sleep(0.3)
    assert receiver.posts == []


@pytest.mark.parametrize(
    "on_finish",
    [{"url": "ftp://example.com/x"}, {"url": "http://x", "secret_env": "not valid"}, {}],
)
def test_callback_definitions_are_checked(rt: Runtime, on_finish: dict[str, str]) -> None:
    definition = {"id": "w", "on_finish": on_finish, "nodes": [{"id": "a", "type": "noop"}]}
    with pytest.raises(spane.DefinitionError, match="on_finish"):
        spane.register_workflow(definition)
    spane.register_workflow({"id": "w", "nodes": [{"id": "a", "type": "noop"}]})
    with pytest.raises(spane.InputError, match="on_finish"):
        spane.enqueue_workflow("w", None, on_finish=on_finish)


def test_the_http_api_takes_a_callback_per_start(rt: Runtime, receiver: Receiver) -> None:
    from tests.webtools import Web

    spane.register_workflow({"id": "plain", "nodes": [{"id": "a", "type": "add_one"}]})
    web = Web()
    try:
        bad = web.call(
            "POST", "/executions", json={"workflow_id": "plain", "on_finish": {"url": "x"}}
        )
        assert bad.status_code == 422 and "on_finish" in bad.json()["message"]
        started = web.call(
            "POST",
            "/executions",
            json={"workflow_id": "plain", "input": 1, "on_finish": {"url": receiver.url}},
        )
        assert started.status_code == 201
    finally:
        web.close()
    receiver.wait_for(1)
    assert receiver.body(0)["execution_id"] == started.json()["execution_id"]
    assert receiver.body(0)["output"] == 2
