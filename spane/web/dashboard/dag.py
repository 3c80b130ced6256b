"""Draw a workflow's DAG as SVG: nodes in columns by depth, edges as curves.

The SVG carries each node's id and status as attributes, so the page's script can recolour
a node when a server-sent event says it changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from ...definitions import Graph
from ...statuses import NodeStatus

WIDTH, HEIGHT = 156, 52
GAP_X, GAP_Y = 36, 18
PAD = 16


def layout(graph: Graph) -> dict[str, tuple[float, float]]:
    """Return the top-left corner of each node's box.

    A node's column is its longest distance from an entry node; within a column, nodes
    follow the mean row of their parents (one barycentre pass keeps most edges short).
    """
    depth: dict[str, int] = {}
    for node in graph.order:
        depth[node] = max((depth[p] + 1 for p in graph.parents[node]), default=0)
    columns: dict[int, list[str]] = {}
    for node in graph.order:
        columns.setdefault(depth[node], []).append(node)
    row: dict[str, float] = {}
    for column in sorted(columns):
        members = columns[column]
        if column:
            members.sort(
                key=lambda n: sum(row[p] for p in graph.parents[n]) / len(graph.parents[n])
            )
        for index, node in enumerate(members):
            row[node] = index
    tallest = max(len(members) for members in columns.values())
    place: dict[str, tuple[float, float]] = {}
    for column, members in columns.items():
        offset = (tallest - len(members)) * (HEIGHT + GAP_Y) / 2
        for index, node in enumerate(members):
            x = PAD + column * (WIDTH + GAP_X)
            y = PAD + offset + index * (HEIGHT + GAP_Y)
            place[node] = (x, y)
    return place


def svg(graph: Graph, statuses: Mapping[str, str] | None = None) -> str:
    """Return the SVG of ``graph``; with ``statuses``, each node coloured by its status
    (``pending`` when missing)."""
    place = layout(graph)
    width = max(x for x, _ in place.values()) + WIDTH + PAD
    height = max(y for _, y in place.values()) + HEIGHT + PAD
    parts = [
        f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:g} {height:g}"'
        f' width="{width:g}" height="{height:g}" role="img" aria-label="workflow graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker>'
        "</defs>",
    ]
    for child in graph.order:
        for parent in graph.parents[child]:
            (px, py), (cx, cy) = place[parent], place[child]
            x1, y1, x2, y2 = px + WIDTH, py + HEIGHT / 2, cx - 2, cy + HEIGHT / 2
            bend = (x2 - x1) / 2
            parts.append(
                f'<path class="edge" data-from="{escape(parent)}" data-to="{escape(child)}" '
                f'd="M{x1:g},{y1:g} C{x1 + bend:g},{y1:g} {x2 - bend:g},{y2:g} {x2:g},{y2:g}" '
                'marker-end="url(#arrow)"/>'
            )
    for node_id in graph.order:
        x, y = place[node_id]
        node = graph.nodes[node_id]
        if statuses is None:  # a definition, not an execution: no states to show
            state, meta = "", escape(_cut(node.type, 22))
        else:
            status = escape(statuses.get(node_id, NodeStatus.PENDING))
            state = f' status-{status}" data-status="{status}'
            meta = f'{escape(_cut(node.type, 10))} · <tspan class="node-status">{status}</tspan>'
        parts.append(
            f'<g class="node{state}" data-node="{escape(node_id)}" '
            f'transform="translate({x:g},{y:g})" tabindex="0">'
            f'<rect width="{WIDTH}" height="{HEIGHT}" rx="8"/>'
            f'<text class="node-id" x="12" y="22">{escape(_cut(node_id, 17))}</text>'
            f'<text class="node-meta" x="12" y="41">{meta}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
