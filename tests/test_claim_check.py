"""Large payloads (SPEC §6): values above the claim-check threshold travel and rest as blob
references, in the broker and in the database alike; executors never see a reference.

Embedded tests use the ``rt`` twin (SQLite, StubBroker, local blob folder). The integration
test runs real workers on Redis + PostgreSQL with blobs in S3 (moto's server mode).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import text

import spane
from spane import codec
from spane import runtime as runtime_module
from spane.blobs import LocalBlobStore, is_ref, parse_ref
from spane.broker import queue_name
from spane.payloads import CLAIMS, MESSAGE_TENANT
from spane.runtime import Runtime
from spane.settings import Settings
from tests.conftest import embedded_settings
from tests.nodes import cc_value
from tests.s3server import s3_bucket, s3_client, s3_endpoint  # noqa: F401
from tests.services import PeakMemory
from tests.workers import WorkerPool

THRESHOLD = Settings().claim_check_bytes  # 51200, the default the `rt` twin uses
BIG = cc_value(80_000)  # above the threshold, well below the payload limit
TERMINAL = ("completed", "failed", "cancelled")


# -- helpers --------------------------------------------------------------------------------


def sql(rt: Runtime, query: str, **params: Any) -> list[Any]:
    """Rows of a query on the runtime's database."""
    with rt.engine.connect() as conn:
        return list(conn.execute(text(query), params).all())


def node_output(rt: Runtime, execution_id: str, node_id: str) -> str | None:
    rows = sql(
        rt,
        "SELECT output FROM spane_nodes WHERE execution_id = :e AND node_id = :n",
        e=execution_id,
        n=node_id,
    )
    return rows[0].output if rows else None


def blob_files(rt: Runtime, tenant: str | None = None) -> list[Path]:
    """Stored blob objects in the runtime's local blob folder (staged files excluded)."""
    store = rt.blobs.inner
    assert isinstance(store, LocalBlobStore)
    root = store.root / tenant if tenant else store.root
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def wait_ended(rt: Runtime, execution_id: str, timeout: float = 30.0) -> str:
    """Wait for an execution to end without reading any payload; return its status."""
    wait_until(
        lambda: rt.store.execution_status(execution_id) in TERMINAL, timeout, "the execution"
    )
    return rt.store.execution_status(execution_id)


def chain(workflow_id: str, *types: str) -> dict[str, Any]:
    nodes = [
        {"id": f"n{i}", "type": t, **({"after": [f"n{i - 1}"]} if i else {})}
        for i, t in enumerate(types)
    ]
    return {"id": workflow_id, "nodes": nodes}


@pytest.fixture
def own_runtime(tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """Build and install embedded runtimes with changed settings; close them afterwards."""
    import tests.nodes  # noqa: F401  (registers the test node types)

    made: list[Runtime] = []
    old = runtime_module.current()

    def make(**changes: Any) -> Runtime:
        runtime = Runtime(embedded_settings(tmp_path, **changes))
        made.append(runtime)
        runtime_module.install(runtime)
        return runtime

    try:
        yield make
    finally:
        runtime_module.install(old)
        for runtime in made:
            runtime.close()


# -- at rest: references in the database ----------------------------------------------------


def test_large_input_and_outputs_rest_as_references(rt: Runtime) -> None:
    spane.register_workflow(
        {
            "id": "rest",
            "nodes": [
                {"id": "a", "type": "echo"},
                {"id": "b", "type": "echo", "after": ["a"]},
                {
                    "id": "n",
                    "type": "transform",
                    "after": ["a"],
                    "config": {"expression": "length(@)"},
                },
            ],
        }
    )
    ex = spane.run("rest", BIG, timeout=30)
    assert ex.status == "completed"

    (row,) = sql(rt, "SELECT input, output FROM spane_executions WHERE id = :e", e=ex.id)
    assert row.input.startswith("@") and len(row.input) < 200 and is_ref(row.input[1:])
    # Two sinks: {"b": BIG, "n": len} is composed from their stored texts, never encoded
    # whole: it rests as b's reference and n's inline value.
    assert row.output.startswith("&") and len(row.output) < 300
    assert rt.payloads.refs(row.output) == [row.input[1:]]
    a, b, n = (node_output(rt, ex.id, x) for x in ("a", "b", "n"))
    assert a is not None and a.startswith("@") and len(a) < 200
    assert a == b == row.input  # content addressed: the same value rests once
    assert n == str(len(BIG))  # small values stay inline

    # Callers (and executors) only ever see values.
    assert ex.input == BIG
    assert ex.nodes["a"].output == BIG and ex.nodes["b"].output == BIG
    assert ex.output == {"b": BIG, "n": len(BIG)}
    assert spane.get_execution(ex.id).output == ex.output

    # Listing reads no blob: with every blob gone it still works; reading values does not.
    for ref in list(rt.blobs.iter_refs()):
        rt.blobs.delete(ref)  # through the cache, so nothing is served from memory
    assert blob_files(rt) == []
    listed = spane.list_executions(workflow_id="rest")
    assert [(s.id, s.status) for s in listed] == [(ex.id, "completed")]
    with pytest.raises(spane.BlobError, match="missing"):
        spane.get_execution(ex.id)


def test_fan_out_of_one_large_value_stores_one_blob(rt: Runtime) -> None:
    width = 500
    spane.register_workflow(
        {
            "id": "fan",
            "nodes": [
                {"id": "src", "type": "echo"},
                *({"id": f"f{i}", "type": "echo", "after": ["src"]} for i in range(width)),
                {
                    "id": "join",
                    "type": "transform",
                    "after": [f"f{i}" for i in range(width)],
                    "config": {"expression": "length(keys(@))"},
                },
            ],
        }
    )
    ex = spane.run("fan", BIG, timeout=90)
    assert ex.status == "completed" and ex.output == width
    # Input, src and 500 fan-out outputs: one value of one tenant, one stored object.
    assert len(blob_files(rt, "default")) == 1
    (row,) = sql(
        rt,
        "SELECT count(DISTINCT output) AS refs, count(*) AS nodes FROM spane_nodes "
        "WHERE execution_id = :e AND node_id <> 'join'",
        e=ex.id,
    )
    assert (row.refs, row.nodes) == (1, width + 1)
    assert all(ex.nodes[f"f{i}"].output == BIG for i in range(0, width, 97))


# -- tenants --------------------------------------------------------------------------------


def test_blobs_are_scoped_to_their_tenant(rt: Runtime) -> None:
    spane.register_workflow(chain("tenanted", "echo"))
    acme = spane.run("tenanted", BIG, tenant="acme", timeout=30)
    globex = spane.run("tenanted", BIG, tenant="globex", timeout=30)
    assert acme.output == globex.output == BIG

    # The same value for two tenants is two blobs (same digest, separate namespaces).
    files_a, files_g = blob_files(rt, "acme"), blob_files(rt, "globex")
    assert len(files_a) == len(files_g) == 1 and files_a[0].name == files_g[0].name
    ref_a = (node_output(rt, acme.id, "n0") or "")[1:]
    ref_g = (node_output(rt, globex.id, "n0") or "")[1:]
    assert parse_ref(ref_a) == ("acme", files_a[0].name)
    assert parse_ref(ref_g) == ("globex", files_g[0].name)

    data = codec.encode(BIG)
    assert rt.blobs.get(ref_a, tenant="acme") == data  # now cached in memory
    for store in (rt.blobs, rt.blobs.inner):  # the cache must not cross tenants either
        with pytest.raises(spane.BlobError, match="another tenant"):
            store.get(ref_a, tenant="globex")
        with pytest.raises(spane.BlobError, match="another tenant"):
            store.get(ref_g, tenant="acme")


def test_a_tenant_blobs_cannot_hold_is_refused_for_small_and_large_values(rt: Runtime) -> None:
    spane.register_workflow(chain("spaced", "echo"))
    for value in (1, BIG):
        with pytest.raises(spane.InputError, match="tenant 'acme corp' is not valid"):
            spane.enqueue_workflow("spaced", value, tenant="acme corp")
    assert spane.list_executions() == [] and blob_files(rt) == []
    large = spane.run("spaced", BIG, tenant="acme-corp", timeout=30)
    assert large.status == "completed" and large.output == BIG


# -- corruption -----------------------------------------------------------------------------


def corrupted_execution(rt: Runtime, tmp_path: Path) -> tuple[str, str]:
    """Run p (a fresh large output) and a gate in parallel into c; corrupt p's blob at rest
    before c reads it. Return the execution id and the corrupted reference."""
    gate = tmp_path / "open-gate"
    spane.register_workflow(
        {
            "id": "corrupt",
            "nodes": [
                {"id": "p", "type": "cc_big", "config": {"size": 80_000, "seed": 7}},
                {"id": "g", "type": "cc_gate", "config": {"path": str(gate)}},
                {"id": "c", "type": "echo", "after": ["p", "g"]},
            ],
        }
    )
    execution_id = spane.enqueue_workflow("corrupt", 1)
    wait_until(
        lambda: rt.store.node_statuses(execution_id)["p"] == "completed", what="p to complete"
    )
    packed = node_output(rt, execution_id, "p")
    assert packed is not None and packed.startswith("@")
    ref = packed[1:]
    tenant, digest = parse_ref(ref)
    (path,) = [f for f in blob_files(rt, tenant) if f.name == digest]
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one flipped bit in the middle of the value
    path.write_bytes(bytes(raw))
    gate.touch()
    return execution_id, ref


def test_corrupted_blob_fails_the_reading_node_and_the_worker_goes_on(
    rt: Runtime, tmp_path: Path
) -> None:
    execution_id, ref = corrupted_execution(rt, tmp_path)
    assert wait_ended(rt, execution_id) == "failed"

    (node,) = sql(
        rt,
        "SELECT status, attempt, error FROM spane_nodes WHERE execution_id = :e AND node_id = 'c'",
        e=execution_id,
    )
    assert node.status == "failed" and node.attempt == 1  # corruption is not retried
    for part in (execution_id, "'c'", "'p'", ref, "corrupted"):
        assert part in node.error, (part, node.error)
    (ex,) = sql(rt, "SELECT error FROM spane_executions WHERE id = :e", e=execution_id)
    assert execution_id in ex.error and "corrupted" in ex.error
    assert [(d.execution_id, d.node_id) for d in spane.dead_letters()] == [(execution_id, "c")]

    # The worker keeps serving.
    spane.register_workflow(chain("after-corruption", "add_one", "echo"))
    later = spane.run("after-corruption", 1, timeout=30)
    assert later.status == "completed" and later.output == 2
    big_later = spane.run("after-corruption", len(BIG), timeout=30)
    assert big_later.output == len(BIG) + 1


def test_reading_a_corrupted_execution_names_execution_and_node(
    rt: Runtime, tmp_path: Path
) -> None:
    execution_id, _ = corrupted_execution(rt, tmp_path)
    wait_ended(rt, execution_id)
    with pytest.raises(spane.BlobError) as info:
        spane.get_execution(execution_id)
    assert execution_id in str(info.value) and "'p'" in str(info.value)


# -- SPANE_MAX_PAYLOAD_BYTES ----------------------------------------------------------------


def test_payloads_over_the_limit_are_refused(own_runtime: Callable[..., Runtime]) -> None:
    limit = 200_000
    rt = own_runtime(max_payload_bytes=limit, claim_check_bytes=10_000)
    spane.register_workflow(chain("limited", "echo"))
    spane.register_workflow(
        {
            "id": "grows",
            "nodes": [
                {"id": "p", "type": "cc_big", "config": {"size": 300_000}},
                {"id": "q", "type": "echo", "after": ["p"]},
            ],
        }
    )

    # An input over the limit is refused before anything is written.
    with pytest.raises(spane.PayloadTooLarge, match="SPANE_MAX_PAYLOAD_BYTES=200000") as info:
        spane.enqueue_workflow("limited", cc_value(300_000))
    assert isinstance(info.value, spane.SpaneError) and "input" in str(info.value)
    for table in ("spane_executions", "spane_nodes", "spane_events"):
        assert sql(rt, f"SELECT count(*) AS n FROM {table}")[0].n == 0
    assert blob_files(rt) == []

    # Under the limit and over this runtime's threshold: stored as a reference.
    fits = cc_value(150_000)
    ok = spane.run("limited", fits, timeout=30)
    assert ok.status == "completed" and ok.output == fits
    assert len(blob_files(rt)) == 1

    # A node output over the limit fails the node (once, not retried) with a clear error.
    ex = spane.run("grows", None, timeout=30)
    assert ex.status == "failed"
    p = ex.nodes["p"]
    assert p.status == "failed" and p.attempts == 1 and p.output is None
    assert "output of node p" in (p.error or "")
    assert "over SPANE_MAX_PAYLOAD_BYTES=200000" in (p.error or "")
    assert "node 'p' failed" in (ex.error or "")
    assert ex.nodes["q"].status == "cancelled"
    assert len(blob_files(rt)) == 1  # nothing of the refused output was stored


# -- retention ------------------------------------------------------------------------------


def test_collect_garbage_removes_finished_executions_and_their_blobs(rt: Runtime) -> None:
    done_value, live_value = cc_value(80_000, seed=1), cc_value(80_000, seed=2)
    spane.register_workflow(chain("finishes", "echo", "echo"))
    spane.register_workflow(
        {
            "id": "parks",
            "nodes": [
                {"id": "a", "type": "echo"},
                {"id": "d", "type": "delay", "after": ["a"], "config": {"duration": "1500ms"}},
                {"id": "e", "type": "echo", "after": ["d"]},
            ],
        }
    )
    done = spane.run("finishes", done_value, timeout=30)
    done_ref = (node_output(rt, done.id, "n0") or "")[1:]
    live_id = spane.enqueue_workflow("parks", live_value)
    wait_until(lambda: rt.store.node_statuses(live_id)["d"] == "waiting", what="the timer")
    live_ref = (node_output(rt, live_id, "d") or "")[1:]
    orphan_ref = rt.blobs.put("default", codec.encode(cc_value(60_000, seed=3)))
    assert {done_ref, live_ref, orphan_ref} == set(rt.blobs.iter_refs())
    sizes = {ref: rt.blobs.size(ref) for ref in (done_ref, orphan_ref)}

    collected = spane.collect_garbage(older_than=0, grace=0)

    assert collected == spane.Collected(
        executions=1, blobs=2, blob_bytes=sizes[done_ref] + sizes[orphan_ref]
    )
    with pytest.raises(spane.UnknownExecution):
        spane.get_execution(done.id)
    for table, column in (("spane_nodes", "execution_id"), ("spane_events", "execution_id")):
        assert not sql(rt, f"SELECT 1 FROM {table} WHERE {column} = :e", e=done.id)
    # The live execution's blob is kept, and no unreferenced blob is left.
    inner = rt.blobs.inner
    assert inner.exists(live_ref) and not inner.exists(done_ref) and not inner.exists(orphan_ref)
    assert set(rt.blobs.iter_refs()) == rt.store.referenced_blobs() == {live_ref}

    # The parked execution resumes with its value intact, then is collected in turn.
    assert wait_ended(rt, live_id) == "completed"
    assert spane.get_execution(live_id).output == live_value
    assert spane.collect_garbage(older_than=0, grace=0).executions == 1
    assert list(rt.blobs.iter_refs()) == [] and blob_files(rt) == []


@pytest.mark.parametrize(
    "where",
    [
        "local",
        pytest.param(
            "s3",
        ),
    ],
)
def test_collection_never_takes_a_blob_that_is_being_reused(
    where: str, own_runtime: Callable[..., Runtime], request: pytest.FixtureRequest
) -> None:
    changes: dict[str, Any] = {}
    if where == "s3":
        changes["blob_url"] = f"s3://{request.getfixturevalue('s3_bucket')}/spane"
    rt = own_runtime(**changes)
    if where == "s3":
        # S3 refreshes a re-used blob only once it is older than touch_after (600 s by
        # default, well under the 1 h default grace); shrink both for the test.
        rt.blobs.inner.touch_after = 0.5  # type: ignore[attr-defined]
    value = cc_value(80_000, seed=4)
    # A value left behind by a collected execution: stored, unreferenced, older than grace.
    ref = rt.payloads.pack("default", value)[1:]
    time.sleep(1.2)

    real = rt.store.referenced_blobs

    def racing() -> set[str]:
        # A concurrent enqueue of the same value, between collection's blob listing and its
        # reference query: the blob is written (found present) first, its row comes after.
        assert rt.payloads.pack("default", value) == "@" + ref
        return real()

    rt.store.referenced_blobs = racing  # type: ignore[method-assign]
    spane.collect_garbage(older_than=0, grace=1.0)
    assert rt.blobs.inner.exists(ref), "a blob about to be referenced was collected"


# -- in messages: the ClaimCheck middleware -------------------------------------------------


def test_large_message_arguments_travel_as_references(rt: Runtime) -> None:
    received: list[tuple[Any, Any]] = []
    lane_queue = queue_name(rt.settings, "default")
    actor: dramatiq.Actor[Any, Any] = dramatiq.Actor(
        lambda data, small: received.append((data, small)),
        broker=rt.broker,
        actor_name="cc_take",
        queue_name=lane_queue,
        priority=0,
        options={},
    )
    actor.send(data=BIG, small=[1, 2, 3])
    # A tenant named in the options is not taken: message options are untrusted input.
    actor.send_with_options(kwargs={"data": BIG, "small": None}, spane_tenant="acme")

    raw = list(rt.broker.queues[lane_queue].queue)
    assert len(raw) == 2 and all(len(r) < 1000 for r in raw), [len(r) for r in raw]
    first, second = (dramatiq.Message.decode(r) for r in raw)
    assert first.options[CLAIMS] == ["data"] and first.kwargs["small"] == [1, 2, 3]
    assert first.kwargs["data"].startswith("@") and second.kwargs["data"].startswith("@")
    assert parse_ref(first.kwargs["data"][1:])[0] == MESSAGE_TENANT
    assert parse_ref(second.kwargs["data"][1:])[0] == MESSAGE_TENANT
    assert len(blob_files(rt, MESSAGE_TENANT)) == 1 and not blob_files(rt, "acme")

    rt.ensure_worker()
    rt.broker.join(lane_queue, timeout=10_000)
    assert sorted(received, key=lambda r: r[1] is None) == [(BIG, [1, 2, 3]), (BIG, None)]


def test_dead_letter_of_a_large_message_keeps_the_reference(rt: Runtime) -> None:
    calls: list[int] = []
    lane_queue = queue_name(rt.settings, "default")

    def boom(data: list[str]) -> None:
        calls.append(len(data))
        raise RuntimeError("boom")

    actor: dramatiq.Actor[Any, Any] = dramatiq.Actor(
        boom,
        broker=rt.broker,
        actor_name="cc_boom",
        queue_name=lane_queue,
        priority=0,
        options={"max_retries": 0},
    )
    actor.send(data=BIG)
    rt.ensure_worker()
    cast(StubBroker, rt.broker).join(lane_queue, timeout=10_000, fail_fast=False)
    wait_until(lambda: bool(spane.dead_letters()), what="the dead letter")
    assert calls == [len(BIG)]  # the actor saw the value
    (letter,) = spane.dead_letters()
    assert letter.kind == "message" and letter.message is not None
    assert len(letter.message) < THRESHOLD, f"dead letter holds {len(letter.message)} chars"


def test_message_argument_over_the_limit_is_refused(own_runtime: Callable[..., Runtime]) -> None:
    rt = own_runtime(max_payload_bytes=200_000, claim_check_bytes=10_000)
    lane_queue = queue_name(rt.settings, "default")
    actor: dramatiq.Actor[Any, Any] = dramatiq.Actor(
        lambda data: None,
        broker=rt.broker,
        actor_name="cc_limited",
        queue_name=lane_queue,
        priority=0,
        options={},
    )
    with pytest.raises(spane.PayloadTooLarge, match="SPANE_MAX_PAYLOAD_BYTES"):
        actor.send(data=cc_value(300_000))
    assert blob_files(rt) == [] and rt.broker.queues[lane_queue].qsize() == 0


# -- the proof: real workers, Redis, PostgreSQL, S3 -----------------------------------------


@pytest.mark.integration
def test_ten_megabytes_through_real_workers_never_touch_redis_or_the_database(
    tmp_path: Path,
    pg_url: str,
    redis_url: str,
    namespace: str,
    s3_bucket: str,  # noqa: F811
    s3_endpoint: str,  # noqa: F811
    workers: WorkerPool,
) -> None:
    import tests.nodes  # noqa: F401

    settings = Settings(
        broker_url=redis_url,
        database_url=pg_url,
        blob_url=f"s3://{s3_bucket}/spane",
        namespace=namespace,
    )
    client = Runtime(settings)  # after s3_bucket pointed AWS_* at moto
    old = runtime_module.install(client)
    try:
        workers.start(
            settings,
            processes=2,
            threads=4,
            AWS_ENDPOINT_URL=s3_endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
        parts = 50
        steps = [f"c{i}" for i in range(5)]
        slices = [f"s{i}" for i in range(parts)]
        spane.register_workflow(
            {
                "id": "proof",
                "nodes": [
                    *(
                        {"id": c, "type": "echo", **({"after": [steps[i - 1]]} if i else {})}
                        for i, c in enumerate(steps)
                    ),
                    *(
                        {
                            "id": s,
                            "type": "cc_slice",
                            "after": [steps[-1]],
                            "config": {"index": i, "parts": parts},
                        }
                        for i, s in enumerate(slices)
                    ),
                    {
                        "id": "join",
                        "type": "cc_concat",
                        "after": slices,
                        "config": {"order": slices},
                    },
                ],
            }
        )
        value = cc_value(10 << 20, seed=42)
        sent = codec.encode(value)
        assert len(sent) > 10_000_000

        with PeakMemory(redis_url) as redis_memory:
            execution_id = spane.enqueue_workflow("proof", value)
            status = wait_ended(client, execution_id, timeout=120)
        assert status == "completed", client.store.node_statuses(execution_id)
        assert redis_memory.delta < 1 << 20, f"Redis grew by {redis_memory.delta} bytes"

        # The database holds no value over the threshold: only references.
        (ex_row,) = sql(
            client,
            "SELECT max(length(input)) AS i, max(length(output)) AS o FROM spane_executions",
        )
        (node_row,) = sql(client, "SELECT max(length(output)) AS o FROM spane_nodes")
        (event_row,) = sql(client, "SELECT coalesce(max(length(detail)), 0) AS d FROM spane_events")
        assert max(ex_row.i, ex_row.o, node_row.o, event_row.d) < settings.claim_check_bytes
        assert ex_row.i < 200 and ex_row.o < 200

        # What comes out is byte for byte what went in, read back and at rest.
        ex = spane.get_execution(execution_id)
        assert codec.encode(ex.output) == sent
        assert codec.encode(ex.nodes["c4"].output) == sent
        (out,) = sql(client, "SELECT output FROM spane_executions WHERE id = :e", e=execution_id)
        assert client.blobs.inner.get(out.output[1:], tenant="default") == sent

        # One object for the 10 MB value (input, chain, join alike) and one per slice.
        s3 = s3_client(s3_endpoint)
        listing = s3.list_objects_v2(Bucket=s3_bucket, Prefix="spane/default/")
        assert listing["KeyCount"] == 1 + parts
    finally:
        runtime_module.install(old)
        client.close()
