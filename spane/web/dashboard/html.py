"""The dashboard's HTML: one layout, small helpers, everything escaped."""

from __future__ import annotations

import time
from html import escape
from typing import Any

import msgspec

from ..auth import Principal

STATIC = "/ui/static"


def e(value: object) -> str:
    """Escape a value for HTML text or a quoted attribute."""
    return escape("" if value is None else str(value))


def when(epoch: float | None) -> str:
    """A timestamp as UTC ``YYYY-MM-DD HH:MM:SS`` (empty when unset)."""
    if epoch is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def took(start: float | None, end: float | None) -> str:
    """A duration such as ``850 ms`` or ``2.4 s`` (empty when not both are known)."""
    if start is None or end is None:
        return ""
    seconds = max(0.0, end - start)
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def badge(status: str) -> str:
    """A status shown as a coloured badge."""
    return f'<span class="badge status-{e(status)}" data-status="{e(status)}">{e(status)}</span>'


def data(element_id: str, value: Any) -> str:
    """Embed ``value`` as JSON for the page's script (safe inside a script element)."""
    text = msgspec.json.encode(value).decode().replace("</", "<\\/")
    return f'<script type="application/json" id="{e(element_id)}">{text}</script>'


def page(title: str, body: str, principal: Principal | None, *, active: str = "") -> str:
    """The whole page around ``body``."""
    links = [
        ("executions", "/", "Executions"),
        ("workflows", "/ui/workflows", "Workflows"),
        ("dead-letters", "/ui/dead-letters", "Dead letters"),
        ("schedules", "/ui/schedules", "Schedules"),
        ("breakers", "/ui/breakers", "Breakers"),
        ("workers", "/ui/workers", "Workers"),
        ("lanes", "/ui/lanes", "Lanes"),
    ]
    nav = "".join(
        f'<a href="{href}" class="{"active" if key == active else ""}">{label}</a>'
        for key, href, label in links
    )
    who = ""
    if principal is not None:
        name = "admin" if principal.admin else f"tenant {principal.tenant}"
        who = (
            f'<span class="who">{e(name)}</span>'
            '<form method="post" action="/ui/logout"><button class="link">Log out</button></form>'
        )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{e(title)} · Spane</title>"
        f"<link rel='stylesheet' href='{STATIC}/dashboard.css'>"
        f"<script defer src='{STATIC}/dashboard.js'></script></head><body>"
        f"<header><a class='brand' href='/'>Spane</a><nav>{nav}</nav>"
        f"<div class='account'>{who}</div></header>"
        f"<main>{body}</main></body></html>"
    )


def listing(headers: tuple[str, ...], rows: str, empty: str = "", table_id: str = "") -> str:
    """A list table with a header cell per name; with no rows, the ``empty`` note after it."""
    ident = f" id='{table_id}'" if table_id else ""
    head = "".join(f"<th>{name}</th>" for name in headers)
    table = (
        f"<table class='list'{ident}><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    )
    return table + (f'<p class="empty">{empty}</p>' if empty and not rows else "")
