"""Worker-side instrumentation for ``bench/bench.py --probe`` (never imported by Spane).

The bench adds this module to the worker command line
(``python -m dramatiq spane.actors bench.probe``). It wraps, at run time and without
changing any engine file, the calls of one node transition and the SQL they issue,
and writes cumulative counters to ``$SPANE_BENCH_PROBE_DIR/probe-<pid>.json`` every
0.5 s. For every wrapped call it records the count, the wall time and the calling
thread's CPU time (``time.thread_time``): wall minus CPU is time spent waiting (for
PostgreSQL, the broker, or the GIL).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event

from spane import executor
from spane import runtime as runtime_module

_lock = threading.Lock()
_stats: dict[str, list[float]] = {}  # name -> [count, wall, cpu]
_local = threading.local()
_folder = os.environ.get("SPANE_BENCH_PROBE_DIR", "")


def _add(name: str, wall: float, cpu: float) -> None:
    with _lock:
        entry = _stats.setdefault(name, [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += wall
        entry[2] += cpu


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        w0, c0 = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            _add(name, time.perf_counter() - w0, time.thread_time() - c0)

    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


_WORDS = re.compile(r"\s+")


def _label(statement: str) -> str:
    """A short, stable name of a SQL statement: verb, table, and what it touches."""
    text = _WORDS.sub(" ", statement).strip()
    verb = text.split(" ", 1)[0].upper()
    table = re.search(r"\b(?:FROM|UPDATE|INTO)\s+(\w+)", text, re.IGNORECASE)
    where = re.search(r"\bSET\s+(\w+)", text, re.IGNORECASE)
    ret = re.search(r"\bRETURNING\s+([\w.]+)", text, re.IGNORECASE)
    cols = re.match(r"SELECT\s+(.*?)\s+FROM", text, re.IGNORECASE)
    parts = [verb, table.group(1) if table else "?"]
    if where:
        parts.append(f"SET {where.group(1)}")
    if ret:
        parts.append(f"RETURNING {ret.group(1).split('.')[-1]}")
    if cols and verb == "SELECT":
        first = cols.group(1).split(",")[0].split(".")[-1][:30]
        parts.append(f"({first}{', ...' if ',' in cols.group(1) else ''})")
    return "sql: " + " ".join(parts)


def _install() -> None:
    rt = runtime_module.get()
    engine = rt.engine
    store = rt.store

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool):
        _local.start = (time.perf_counter(), time.thread_time())

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool):
        start = getattr(_local, "start", None)
        if start is not None:
            _add(_label(statement), time.perf_counter() - start[0], time.thread_time() - start[1])

    dialect = engine.dialect
    dialect.do_commit = _timed("sql: COMMIT", dialect.do_commit)  # type: ignore[method-assign]
    dialect.do_rollback = _timed("sql: ROLLBACK", dialect.do_rollback)  # type: ignore[method-assign]
    if hasattr(dialect, "do_ping"):
        dialect.do_ping = _timed("sql: pool pre-ping", dialect.do_ping)  # type: ignore[method-assign]
    engine.pool._do_get = _timed("pool checkout (_do_get)", engine.pool._do_get)  # type: ignore[attr-defined]

    # Transitions (instance attributes shadow the class methods; executor calls them
    # through ``runtime.store`` at call time).
    for name in ("claim_node", "complete_node", "fail_node", "retry_node", "park_node"):
        setattr(store, name, _timed(f"store.{name}", getattr(store, name)))
    store.graph = _timed("store.graph (lru)", store.graph)
    rt.dispatch = _timed("runtime.dispatch (broker enqueue)", rt.dispatch)  # type: ignore[method-assign]

    # The whole node message, as the actor runs it; and the user code alone.
    executor.run_node = _timed("executor.run_node (total)", executor.run_node)
    executor._call = _timed("executor._call (node code)", executor._call)
    executor.codec.check_json = _timed("codec.check_json", executor.codec.check_json)

    # The broker's enqueue itself (inside dispatch).
    broker = rt.broker
    broker.enqueue = _timed("broker.enqueue", broker.enqueue)  # type: ignore[method-assign]


def _dump() -> None:
    if not _folder:
        return
    with _lock:
        data = {k: list(v) for k, v in _stats.items()}
    data["_process"] = [1, time.process_time(), time.process_time()]
    path = os.path.join(_folder, f"probe-{os.getpid()}.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as sink:
        json.dump(data, sink)
    os.replace(tmp, path)


def _loop() -> None:
    while True:
        time.sleep(0.5)
        with contextlib.suppress(OSError):
            _dump()


_install()
threading.Thread(target=_loop, name="bench-probe", daemon=True).start()
atexit.register(_dump)
