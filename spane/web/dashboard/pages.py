"""The dashboard's pages: executions, one execution's DAG, workflows, dead letters,
schedules, circuit breakers, workers.

Pages are rendered on the server from the store's payload-free queries; the page script
(``static/dashboard.js``) follows server-sent events and calls the JSON API for controls
and for values, which are fetched only when asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import yaml
from starlette.requests import Request

from ... import control, errors, runtime, starting
from ...definitions import to_dict
from ...statuses import ExecutionStatus
from ...workers import workers as live_workers
from ..api.executions import decode_cursor, encode_cursor
from ..auth import Principal
from ..errors import HttpError
from . import dag
from .html import badge, data, e, listing, page, took, when

Render = Callable[[Request, Principal], str]
_SINCE = {"1h": 3600, "24h": 86400, "7d": 7 * 86400}
_PAGE = 50
_HISTORY = 1000  # events shown on an execution's page (the latest)


#: Where a control's result (or its error) is announced.
_NOTE = '<p><span id="control-message" role="status"></span></p>'


def executions(request: Request, me: Principal) -> str:
    """The executions list, with filters; new and changed executions arrive live."""
    q = request.query_params
    status = q.get("status") or None
    if status is not None and status not in list(ExecutionStatus):
        raise HttpError(422, f"unknown status {status!r}")
    tenant = (q.get("tenant") or None) if me.admin else me.tenant
    since = time.time() - _SINCE[q["since"]] if q.get("since") in _SINCE else None
    filters: dict[str, Any] = {
        "status": status,
        "workflow_id": q.get("workflow_id") or None,
        "tenant": tenant,
        "since": since,
    }
    before = decode_cursor(q["cursor"]) if q.get("cursor") else None
    rows = runtime.get().store.browse.executions_page(**filters, before=before, limit=_PAGE + 1)
    more = len(rows) > _PAGE
    rows = rows[:_PAGE]
    options = "".join(
        f'<option value="{s}"{" selected" if s == status else ""}>{s or "any"}</option>'
        for s in ("", *ExecutionStatus)
    )
    spans = "".join(
        f'<option value="{k}"{" selected" if q.get("since") == k else ""}>last {k}</option>'
        for k in _SINCE
    )
    tenant_field = (
        f'<label>Tenant <input name="tenant" value="{e(q.get("tenant", ""))}"></label>'
        if me.admin
        else ""
    )
    form = (
        '<form class="filters" method="get" action="/">'
        f'<label>Status <select name="status">{options}</select></label>'
        f'<label>Workflow <input name="workflow_id" value="{e(q.get("workflow_id", ""))}">'
        f"</label>{tenant_field}"
        f'<label>Started <select name="since"><option value="">any time</option>{spans}'
        "</select></label><button>Filter</button></form>"
    )
    body = "".join(_execution_row(r) for r in rows)
    stream = {k: v for k, v in filters.items() if v is not None}
    follow = "" if before else data("stream", "/api/v1/streams/executions?" + urlencode(stream))
    nxt = ""
    if more:
        keep = {k: v for k, v in q.items() if k != "cursor"}
        older = urlencode({**keep, "cursor": encode_cursor(rows[-1])})
        nxt = f'<a class="more" href="/?{e(older)}">Older →</a>'
    table = listing(
        ("Execution", "Workflow", "Tenant", "Status", "Started (UTC)", "Took"),
        body,
        "No executions match.",
        "executions",
    )
    return page(
        "Executions",
        f"<h1>Executions</h1>{form}{table}{nxt}{follow}",
        me,
        active="executions",
    )


def _execution_row(r: Any) -> str:
    return (
        f'<tr data-id="{e(r.id)}"><td><a class="mono" href="/ui/executions/{e(r.id)}">'
        f"{e(r.id[:8])}</a></td>"
        f'<td><a href="/ui/workflows/{e(r.workflow_id)}?version={r.version}">'
        f"{e(r.workflow_id)}</a> <span class='dim'>v{r.version}</span></td>"
        f"<td>{e(r.tenant)}</td><td class='status'>{badge(r.status)}</td>"
        f"<td>{when(r.created_at)}</td>"
        f"<td class='took'>{took(r.created_at, r.finished_at)}</td></tr>"
    )


def execution(request: Request, me: Principal) -> str:
    """One execution: its DAG with live node states, controls, history, values, children."""
    rt = runtime.get()
    browse = rt.store.browse
    ex = browse.execution_header(request.path_params["execution_id"])
    if not me.sees(ex.tenant):
        raise errors.UnknownExecution(f"no execution has id {ex.id!r}")
    nodes = browse.node_rows(ex.id)
    graph = rt.store.graph(ex.workflow_id, ex.version)
    statuses = {n.node_id: n.status for n in nodes}
    children = browse.executions_page(parent_id=ex.id, limit=500)
    letters = browse.dead_letters(execution_id=ex.id, status="open")
    history = rt.store.history(ex.id)
    parent = (
        f'<dt>Parent</dt><dd><a class="mono" href="/ui/executions/{e(ex.parent_id)}">'
        f"{e(ex.parent_id[:8])}</a> node {e(ex.parent_node_id)}</dd>"
        if ex.parent_id
        else ""
    )
    facts = (
        f'<dl class="facts"><dt>Workflow</dt><dd><a href="/ui/workflows/{e(ex.workflow_id)}'
        f'?version={ex.version}">{e(ex.workflow_id)}</a> v{ex.version}</dd>'
        f"<dt>Tenant</dt><dd>{e(ex.tenant)}</dd>"
        f"<dt>Started</dt><dd>{when(ex.created_at)} UTC</dd>"
        f'<dt>Took</dt><dd id="took">{took(ex.created_at, ex.finished_at)}</dd>{parent}</dl>'
    )
    error = f'<pre class="error" id="execution-error">{e(ex.error)}</pre>' if ex.error else ""
    choices = "".join(f'<option value="{e(n)}">{e(n)}</option>' for n in graph.order)
    retry = "".join(
        f'<button data-action="retry-dead-letter" data-letter="{d.id}">Retry dead letter '
        f"#{d.id} ({e(d.node_id)})</button>"
        for d in letters
    )
    controls = (
        '<div class="controls">'
        '<button data-action="pause">Pause</button>'
        '<button data-action="resume">Resume</button>'
        '<button data-action="cancel" class="danger">Cancel</button>'
        '<span class="replay"><select id="replay-from"><option value="">failed nodes</option>'
        f'{choices}</select><button data-action="replay">Replay</button></span>'
        f'<button data-action="rerun">Rerun</button>{retry}'
        '<span id="control-message" role="status"></span></div>'
    )
    values = (
        '<div class="values"><button data-value="input">Show input</button>'
        '<button data-value="output">Show output</button></div>'
    )
    kids = "".join(
        f'<li><a class="mono" href="/ui/executions/{e(c.id)}">{e(c.id[:8])}</a> '
        f"{e(c.workflow_id)} {badge(c.status)}</li>"
        for c in children
    )
    children_html = f"<h2>Children</h2><ul class='children'>{kids}</ul>" if children else ""
    timeline = "".join(
        f"<tr><td>{when(v.at)}</td><td>{e(v.node_id or '')}</td><td>{e(v.kind)}</td>"
        f"<td>{'' if v.attempt is None else v.attempt}</td>"
        f"<td><span class='detail'>{e((v.detail or '')[:300])}</span></td></tr>"
        for v in history[-_HISTORY:]
    )
    if len(history) > _HISTORY:
        link = f"/api/v1/executions/{e(ex.id)}/history"
        timeline = (
            f"<tr><td colspan='5' class='dim'>{len(history) - _HISTORY} earlier events: "
            f"<a href='{link}'>the whole history</a></td></tr>{timeline}"
        )
    node_data = {
        n.node_id: {
            "type": n.type,
            "status": n.status,
            "attempts": n.attempts,
            "error": n.error,
            "queued_at": n.queued_at,
            "started_at": n.started_at,
            "finished_at": n.finished_at,
            "child_id": n.child_id,
        }
        for n in nodes
    }
    body = (
        f'<div class="title"><h1>Execution <span class="mono">{e(ex.id)}</span></h1>'
        f'<span id="execution-status">{badge(ex.status)}</span></div>'
        f"{facts}{error}{controls}"
        f'<section class="graph"><div class="dag-wrap">{dag.svg(graph, statuses)}</div>'
        '<aside id="node-panel" class="panel"><p class="dim">Select a node to see its '
        "attempts, timings, error and output.</p></aside></section>"
        f'{values}<pre id="value" class="value" hidden></pre>{children_html}'
        "<h2>History</h2><table class='list history'><thead><tr><th>At (UTC)</th><th>Node</th>"
        f"<th>Event</th><th>Attempt</th><th>Detail</th></tr></thead><tbody>{timeline}</tbody>"
        "</table>"
        + data("execution", {"id": ex.id, "status": ex.status})
        + data("nodes", node_data)
    )
    return page(f"Execution {ex.id[:8]}", body, me, active="executions")


def workflows(request: Request, me: Principal) -> str:
    """Every workflow with its latest version."""
    rows = "".join(
        f'<tr><td><a href="/ui/workflows/{e(w.workflow_id)}">{e(w.workflow_id)}</a></td>'
        f"<td>v{w.version}</td><td>{when(w.created_at)}</td>"
        f'<td><a href="/?{e(urlencode({"workflow_id": w.workflow_id}))}">executions</a></td></tr>'
        for w in runtime.get().store.browse.workflows()
    )
    table = listing(("Workflow", "Latest", "Registered (UTC)", ""), rows)
    return page("Workflows", f"<h1>Workflows</h1>{table}", me, active="workflows")


def workflow(request: Request, me: Principal) -> str:
    """One workflow: its versions, the chosen version's graph and definition."""
    rt = runtime.get()
    workflow_id = request.path_params["workflow_id"]
    raw = request.query_params.get("version", "")
    version, definition = rt.store.workflow_version(
        workflow_id, int(raw) if raw.isdigit() else None
    )
    versions = rt.store.browse.workflow_versions(workflow_id)
    links = " ".join(
        f'<a class="{"active" if v.version == version else ""}" '
        f'href="/ui/workflows/{e(workflow_id)}?version={v.version}">v{v.version}</a>'
        for v in versions
    )
    text = yaml.safe_dump(to_dict(definition), sort_keys=False, width=100)
    body = (
        f"<h1>Workflow {e(workflow_id)} <span class='dim'>v{version}</span></h1>"
        f"<p class='versions'>Versions: {links}</p>"
        f'<div class="dag-wrap">{dag.svg(rt.store.graph(workflow_id, version))}</div>'
        f"<h2>Definition</h2><pre class='value'>{e(text)}</pre>"
    )
    return page(f"Workflow {workflow_id}", body, me, active="workflows")


def dead_letters(request: Request, me: Principal) -> str:
    """Dead letters (open by default), each with a retry button."""
    status = request.query_params.get("status", "open")
    if status not in ("open", "retried", "all"):
        raise HttpError(422, f"unknown status {status!r}: open, retried or all")
    letters = runtime.get().store.browse.dead_letters(
        status=None if status == "all" else status, tenant=me.tenant, limit=200
    )
    rows = "".join(
        f'<tr data-letter="{d.id}"><td>#{d.id}</td><td>{e(d.kind)}</td><td>'
        + (
            f'<a class="mono" href="/ui/executions/{e(d.execution_id)}">{e(d.execution_id[:8])}'
            f"</a> {e(d.node_id)}"
            if d.execution_id
            else f"{e(d.queue)} {e(d.actor)}"
        )
        + f"</td><td><details><summary>{e(d.reason.splitlines()[-1][:120] if d.reason else '')}"
        f"</summary><pre>{e(d.reason)}</pre></details></td><td>{when(d.created_at)}</td>"
        f"<td class='status'>{badge(d.status)}</td><td>"
        + (
            f'<button data-action="retry-dead-letter" data-letter="{d.id}">Retry</button>'
            if d.status == "open"
            else ""
        )
        + "</td></tr>"
        for d in letters
    )
    tabs = " ".join(
        f'<a class="{"active" if s == status else ""}" href="/ui/dead-letters?status={s}">{s}</a>'
        for s in ("open", "retried", "all")
    )
    table = listing(
        ("Id", "Kind", "Where", "Reason", "Recorded (UTC)", "Status", ""),
        rows,
        "No dead letters.",
        "dead-letters",
    )
    return page(
        "Dead letters",
        f"<h1>Dead letters</h1><p class='tabs'>{tabs}</p>{table}",
        me,
        active="dead-letters",
    )


def schedules(request: Request, me: Principal) -> str:
    """The caller's schedules, each with pause or resume and trigger-now buttons."""
    rows = "".join(
        f'<tr data-schedule="{e(s.id)}"><td class="mono">{e(s.id)}</td>'
        f'<td><a href="/ui/workflows/{e(s.workflow_id)}">{e(s.workflow_id)}</a></td>'
        f"<td>{e(s.tenant)}</td>"
        f"<td>{e(s.cron if s.cron is not None else f'every {s.every:g} s')}"
        f" <span class='dim'>{e(s.timezone)}</span></td>"
        f"<td class='next'>{'' if s.paused else when(s.next_at)}</td><td class='last'>"
        + (
            f'<a class="mono" href="/ui/executions/{e(s.last_execution_id)}">'
            f"{e(s.last_execution_id[:8])}</a> {when(s.last_fired_at)}"
            if s.last_execution_id
            else ""
        )
        + f"</td><td class='status'>{badge('paused' if s.paused else 'active')}</td><td>"
        f'<button data-action="{"resume" if s.paused else "pause"}">'
        f"{'Resume' if s.paused else 'Pause'}</button> "
        '<button data-action="trigger">Trigger now</button></td></tr>'
        for s in starting.list_schedules()
        if me.sees(s.tenant)
    )
    headers = ("Schedule", "Workflow", "Tenant", "When", "Next (UTC)", "Last execution")
    table = listing((*headers, "Status", ""), rows, "No schedules.", "schedules")
    return page("Schedules", f"<h1>Schedules</h1>{_NOTE}{table}", me, active="schedules")


def breakers(request: Request, me: Principal) -> str:
    """Circuit breakers: state, failures, when an open one may close; reset for admins."""
    rows = "".join(
        f'<tr data-breaker="{e(b.name)}"><td class="mono">{e(b.name)}</td>'
        f"<td class='status'>{badge(b.state)}</td>"
        f"<td class='failures'>{b.failures}/{b.fail_max}</td><td>{b.reset_timeout:g} s</td>"
        f"<td>{when(b.opened_at)}</td><td class='closes'>{when(b.closes_at)}</td><td>"
        + ('<button data-action="reset">Reset</button>' if me.admin else "")
        + "</td></tr>"
        for b in control.breakers()
    )
    headers = ("Breaker", "State", "Failures", "Open for", "Opened (UTC)", "May close (UTC)", "")
    table = listing(headers, rows, "No breakers declared.", "breakers")
    return page(
        "Circuit breakers", f"<h1>Circuit breakers</h1>{_NOTE}{table}", me, active="breakers"
    )


def workers(request: Request, me: Principal) -> str:
    """Live worker processes: what each serves, its threads and in-flight attempts."""
    rows = "".join(
        f'<tr data-worker="{e(w.id)}"><td class="mono">{e(w.host)}:{w.pid}</td>'
        f"<td>{e(w.version)}</td><td>{e(', '.join(w.lanes))}</td>"
        f"<td>{e(', '.join(w.node_types))}</td><td>{w.threads}</td>"
        f"<td class='inflight'>{w.inflight}</td>"
        f"<td class='status'>{badge('draining' if w.draining else 'running')}</td>"
        f"<td>{when(w.started_at)}</td><td>{when(w.heartbeat_at)}</td></tr>"
        for w in live_workers()
    )
    headers = ("Worker", "Version", "Lanes", "Node types", "Threads", "In flight", "Status")
    table = listing(
        (*headers, "Started (UTC)", "Last heartbeat (UTC)"), rows, "No live workers.", "workers"
    )
    return page("Workers", f"<h1>Workers</h1>{table}", me, active="workers")


def login(target: str = "/", error: str = "") -> str:
    """The sign-in form: an API token, kept in an HttpOnly cookie; then on to ``target``."""
    note = f'<p class="error">{e(error)}</p>' if error else ""
    action = "/ui/login?" + urlencode({"next": target})
    return page(
        "Sign in",
        f"<h1>Sign in</h1><form class='login' method='post' action='{e(action)}'>"
        "<label>API token <input type='password' name='token' autocomplete='off' required>"
        f"</label><button>Sign in</button></form>{note}"
        "<p class='dim'>Create a token with <code>spane tokens create --tenant NAME</code> "
        "(or <code>--admin</code>).</p>",
        None,
    )
