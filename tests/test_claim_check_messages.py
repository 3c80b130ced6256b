"""The claim check on messages (SPEC §6): values travel as references, id-only messages
are never measured, and collection never takes a blob an undelivered message carries.

All on the embedded twin (SQLite, StubBroker, local blob folder).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
import pytest

import spane
from spane import callbacks, codec
from spane.blobs import parse_ref
from spane.broker import queue_name
from spane.payloads import CLAIMS, HOLD, HOLD_TENANT, LEGACY_CLAIM, MESSAGE_TENANT, Payloads
from spane.producer import START_WORKFLOW
from spane.runtime import COORDINATOR, Runtime
from spane.store.callbacks import DueCallback
from tests.nodes import cc_value
from tests.test_claim_check import blob_files, wait_until

BIG = {"rows": cc_value(80_000, seed=11)}  # above the default threshold


def user_actor(rt: Runtime, name: str, fn: Callable[..., Any], **options: Any) -> Any:
    """Declare a user actor on the runtime's default lane."""
    return dramatiq.Actor(
        fn,
        broker=rt.broker,
        actor_name=name,
        queue_name=queue_name(rt.settings, "default"),
        priority=0,
        options=options,
    )


@pytest.fixture
def measured(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every (actor, argument) the claim check encodes to measure it."""
    calls: list[tuple[str, str]] = []
    real = rt.payloads.pack_argument

    def spy(key: str, value: Any, actor: str) -> str | None:
        calls.append((actor, key))
        return real(key, value, actor)

    monkeypatch.setattr(rt.payloads, "pack_argument", spy)
    return calls


@pytest.fixture
def sent(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[dramatiq.Message[Any]]:
    """Every message the runtime's broker enqueued, as it was sent."""
    messages: list[dramatiq.Message[Any]] = []
    real = rt.broker.enqueue

    def spy(message: dramatiq.Message[Any], *, delay: int | None = None) -> Any:
        result = real(message, delay=delay)
        messages.append(dramatiq.Message.decode(result.encode()))
        return result

    monkeypatch.setattr(rt.broker, "enqueue", spy)
    return messages


def test_a_user_actor_large_argument_travels_as_a_reference_and_arrives_resolved(
    rt: Runtime, measured: list[tuple[str, str]], sent: list[dramatiq.Message[Any]]
) -> None:
    received: list[Any] = []
    actor = user_actor(rt, "cc_user", lambda data, small: received.append((data, small)))
    rt.ensure_worker()
    actor.send(data=BIG, small="a short string")

    wait_until(lambda: bool(received), what="the message")
    assert received == [(BIG, "a short string")]
    (message,) = sent
    assert len(message.encode()) < 1000 and message.options[CLAIMS] == ["data"]
    assert message.kwargs["small"] == "a short string"
    assert parse_ref(message.kwargs["data"][1:])[0] == MESSAGE_TENANT
    assert measured == [("cc_user", "data")]  # the short string was bounded, not encoded
    # Held while undelivered, released once acknowledged.
    assert parse_ref(message.options[HOLD])[0] == HOLD_TENANT
    wait_until(lambda: not blob_files(rt, HOLD_TENANT), what="the hold to be released")


def test_id_only_messages_are_never_measured(
    rt: Runtime, measured: list[tuple[str, str]], sent: list[dramatiq.Message[Any]]
) -> None:
    spane.register_workflow(
        {
            "id": "ids",
            "nodes": [
                {"id": "a", "type": "echo"},
                {"id": "d", "type": "delay", "after": ["a"], "config": {"duration": "50ms"}},
                *({"id": f"f{i}", "type": "echo", "after": ["d"]} for i in range(5)),
            ],
        }
    )
    ex = spane.run("ids", BIG, timeout=30)  # a large input: rests as a reference, not sent
    assert ex.status == "completed" and ex.nodes["f4"].output == BIG

    actors = {m.actor_name for m in sent}
    assert COORDINATOR in actors and any(a.startswith("spane.node.echo.") for a in actors)
    assert all(CLAIMS not in m.options and HOLD not in m.options for m in sent)
    assert measured == []
    assert blob_files(rt, MESSAGE_TENANT) == [] and blob_files(rt, HOLD_TENANT) == []


def test_the_start_actor_input_travels_as_a_reference(
    rt: Runtime, measured: list[tuple[str, str]], sent: list[dramatiq.Message[Any]]
) -> None:
    spane.register_workflow({"id": "started", "nodes": [{"id": "n", "type": "echo"}]})
    message = spane.send_start("started", BIG, tenant="acme")

    start = next(m for m in sent if m.actor_name == START_WORKFLOW)
    assert len(start.encode()) < 1000 and start.options[CLAIMS] == ["input"]
    assert measured == [(START_WORKFLOW, "input")]
    wait_until(lambda: rt.store.find_start_by_key("acme", message.message_id) is not None)
    execution_id = rt.store.find_start_by_key("acme", message.message_id)
    assert execution_id is not None
    wait_until(lambda: rt.store.execution_status(execution_id) == "completed")
    ex = spane.get_execution(execution_id)
    assert ex.input == ex.output == BIG


def test_a_delayed_message_survives_collection_and_is_delivered_with_its_value(
    rt: Runtime,
) -> None:
    received: list[Any] = []
    actor = user_actor(rt, "cc_later", lambda data: received.append(data))
    rt.ensure_worker()
    actor.send_with_options(kwargs={"data": BIG}, delay=1500)
    wait_until(lambda: bool(blob_files(rt, HOLD_TENANT)), what="the hold")
    (blob,) = blob_files(rt, MESSAGE_TENANT)
    ref = f"spane-blob:v1:{MESSAGE_TENANT}:{blob.name}"
    assert ref not in rt.store.referenced_blobs()  # no row reaches it: only the message

    collected = spane.collect_garbage(older_than=0, grace=0)

    assert received == [] and collected.blobs == 0
    assert rt.blobs.inner.exists(ref)
    wait_until(lambda: bool(received), what="the delayed message")
    assert received == [BIG]
    # Delivered: nothing holds the blob any more, and the next collection takes it.
    wait_until(lambda: not blob_files(rt, HOLD_TENANT), what="the holds to be released")
    assert spane.collect_garbage(older_than=0, grace=0).blobs == 1
    assert blob_files(rt) == []


def test_a_retried_message_stays_held_between_its_deliveries(rt: Runtime) -> None:
    calls: list[Any] = []

    def flaky(data: Any) -> None:
        calls.append(data)
        if len(calls) == 1:
            raise RuntimeError("first delivery fails")

    actor = user_actor(rt, "cc_flaky", flaky, max_retries=1, min_backoff=1000)
    rt.ensure_worker()
    actor.send(data=BIG)
    wait_until(lambda: len(calls) == 1, what="the first delivery")
    spane.collect_garbage(older_than=0, grace=0)  # during the backoff
    wait_until(lambda: len(calls) == 2, what="the retry")
    assert calls == [BIG, BIG]
    wait_until(lambda: not blob_files(rt, HOLD_TENANT), what="the holds to be released")


def test_a_dead_lettered_message_keeps_its_value_through_collection(rt: Runtime) -> None:
    calls: list[Any] = []

    def fails_once(data: Any) -> None:
        calls.append(data)
        if len(calls) == 1:
            raise RuntimeError("boom")

    actor = user_actor(rt, "cc_dead", fails_once, max_retries=0)
    rt.ensure_worker()
    actor.send(data=BIG)
    wait_until(lambda: bool(spane.dead_letters()), what="the dead letter")
    wait_until(lambda: not blob_files(rt, HOLD_TENANT), what="the hold to be released")

    assert spane.collect_garbage(older_than=0, grace=0).blobs == 0

    (letter,) = spane.dead_letters()
    spane.retry_dead_letter(letter.id)
    wait_until(lambda: len(calls) == 2, what="the retried message")
    assert calls == [BIG, BIG]


def test_a_message_of_the_previous_release_is_still_resolved(rt: Runtime) -> None:
    received: list[Any] = []
    actor = user_actor(rt, "cc_legacy", lambda data: received.append(data))
    ref = rt.blobs.put(MESSAGE_TENANT, codec.encode(BIG))
    old: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=actor.queue_name,
        actor_name="cc_legacy",
        args=(),
        kwargs={"data": {LEGACY_CLAIM: ref}},
        options={},
    )
    rt.broker.enqueue(old)
    rt.ensure_worker()
    wait_until(lambda: bool(received), what="the message")
    assert received == [BIG]


def test_a_claim_of_another_tenant_is_refused(rt: Runtime) -> None:
    received: list[Any] = []
    actor = user_actor(rt, "cc_forged_new", received.append, max_retries=0)
    secret = rt.blobs.put("acme", codec.encode(["acme's secret " * 10_000]))
    forged: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=actor.queue_name,
        actor_name="cc_forged_new",
        args=(),
        kwargs={"value": "@" + secret},
        options={CLAIMS: ["value"]},
    )
    rt.broker.enqueue(forged)
    rt.ensure_worker()
    wait_until(lambda: bool(spane.dead_letters()), what="the dead letter")
    assert received == []
    (letter,) = spane.dead_letters()
    assert "another tenant" in letter.reason and "secret" not in (letter.message or "")


def test_references_are_found_in_either_release_form() -> None:
    digest = "ab" * 32
    ref = f"spane-blob:v1:acme:{digest}"
    raw_new = codec.dumps({"kwargs": {"a": "@" + ref}, "options": {CLAIMS: ["a"]}})
    raw_old = codec.dumps({"kwargs": {"a": {LEGACY_CLAIM: ref}}, "options": {}})
    assert Payloads.message_refs(raw_new) == Payloads.message_refs(raw_old) == [ref]
    assert Payloads.refs("&" + codec.dumps({"x": "@" + ref, "y": "1"})) == [ref]
    assert Payloads.inline('{"a": "@x"}') and not Payloads.inline("@" + ref)


@pytest.mark.parametrize(
    ("stored", "output", "offloaded"),
    [
        ('{"b":1}', {"b": 1}, False),
        ("@spane-blob:v1:acme:" + "ab" * 32, None, True),
        ("&" + codec.dumps({"b": "@spane-blob:v1:acme:" + "ab" * 32, "n": "1"}), None, True),
    ],
)
def test_a_callback_posts_an_inline_output_and_flags_any_other(
    stored: str, output: Any, offloaded: bool
) -> None:
    due = DueCallback(
        execution_id="e",
        workflow_id="w",
        version=1,
        tenant="acme",
        status="completed",
        error=None,
        output=stored,
        finished_at=1.0,
        on_finish="{}",
        attempts=0,
    )
    posted = codec.loads(callbacks.body(due))
    assert (posted["output"], posted["output_offloaded"]) == (output, offloaded)
