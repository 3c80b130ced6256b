"""The dashboard's Lanes page: each lane's work per tenant and the workers serving it."""

from __future__ import annotations

from starlette.requests import Request

from ...lanes import lanes as lane_view
from ..auth import Principal
from .html import e, page, took


def lanes(request: Request, me: Principal) -> str:
    """Per lane and tenant: ready, in flight, oldest wait; a tenant token sees its own."""
    rows = []
    for lane in lane_view(None if me.admin else me.tenant):
        served = (
            f"{lane.workers} ({lane.threads} threads)"
            if lane.workers
            else "<span class='badge status-failed'>none</span>"
        )
        row = f'<tr data-lane="{e(lane.lane)}">'
        head = f'{row}<td class="mono">{e(lane.lane)}</td><td>{served}</td>'
        if not lane.tenants:
            rows.append(f"{head}<td class='dim'>-</td><td>0</td><td>0</td><td>0</td><td></td></tr>")
        for i, load in enumerate(lane.tenants):
            start = head if i == 0 else f"{row}<td></td><td></td>"
            rows.append(
                f'{start}<td data-tenant="{e(load.tenant)}">{e(load.tenant)}</td>'
                f"<td class='ready'>{load.ready}</td><td class='in-flight'>{load.in_flight}</td>"
                f"<td class='limited'>{load.limited}</td>"
                f"<td class='oldest'>{took(0.0, load.oldest_wait)}</td></tr>"
            )
    table = (
        "<table class='list' id='lanes'><thead><tr><th>Lane</th><th>Workers</th>"
        "<th>Tenant</th><th>Ready</th><th>In flight</th><th>Waiting on a limit</th>"
        "<th>Oldest wait</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    note = (
        "<p class='dim'>Ready: queued and due, not started. Lanes are separate queues; "
        "a worker serves the lanes in its <code>SPANE_LANES</code> (all by default).</p>"
    )
    return page("Lanes", f"<h1>Lanes</h1>{note}{table}", me, active="lanes")
