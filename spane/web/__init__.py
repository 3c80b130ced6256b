"""``spane web``: the HTTP API, webhook triggers and the dashboard (Starlette).

Layout: ``routing`` (operations and their endpoint), ``api/`` (one module per resource),
``openapi`` (the document, from the same msgspec types), ``auth`` (API tokens), ``hooks``
(webhook triggers), ``dashboard/`` (pages and static files), ``app`` (the whole).
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
