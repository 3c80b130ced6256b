"""``spane web`` and ``spane tokens``: serve the HTTP API and dashboard; manage API tokens."""

from __future__ import annotations

import argparse

import msgspec
from rich.table import Table
from rich.text import Text

from .. import runtime, tokens
from . import render
from .commands import Streams, UsageError


def serve(args: argparse.Namespace, io: Streams) -> int:
    """Serve the API, webhooks and dashboard until interrupted (SIGINT or SIGTERM)."""
    import uvicorn

    from ..web import create_app

    settings = runtime.get().settings  # migrates the database before the first request
    host = args.host or settings.web_host
    port = args.port or settings.web_port
    io.err.print(f"spane web: http://{host}:{port}/ (API under /api/v1)", highlight=False)
    uvicorn.run(create_app(), host=host, port=port, log_level="info", proxy_headers=False)
    return 0


def create(args: argparse.Namespace, io: Streams) -> int:
    """Create a token and print it once: only its hash is kept."""
    if (args.tenant is None) == (not args.admin):
        raise UsageError("give either --tenant NAME or --admin")
    record, token = tokens.create_token(None if args.admin else args.tenant, label=args.label)
    if args.json:
        io.out.print_json(msgspec.json.encode({"id": record.id, "token": token}).decode())
    else:
        io.out.print(token, highlight=False, soft_wrap=True)
        who = "admin (every tenant)" if record.tenant is None else f"tenant {record.tenant}"
        io.err.print(Text(f"token {record.id} for {who}; it is not shown again", style="dim"))
    return 0


def list_(args: argparse.Namespace, io: Streams) -> int:
    """List tokens (never their secrets)."""
    records = tokens.list_tokens()
    if args.json:
        io.out.print_json(msgspec.json.encode(records).decode())
        return 0
    table = Table("id", "tenant", "label", "created", "revoked", box=None)
    for r in records:
        table.add_row(
            r.id,
            r.tenant or Text("admin", style="bold"),
            r.label,
            render.timestamp(r.created_at),
            render.timestamp(r.revoked_at) if r.revoked_at else "",
        )
    io.out.print(table)
    return 0


def revoke(args: argparse.Namespace, io: Streams) -> int:
    """Revoke a token by id; requests with it are refused from then on."""
    if not tokens.revoke_token(args.token_id):
        raise UsageError(f"no live token has id {args.token_id!r} (see `spane tokens list`)")
    io.err.print(f"token {args.token_id} revoked")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``web`` and ``tokens`` to the ``spane`` parser."""
    web = sub.add_parser("web", help="serve the HTTP API, webhooks and the dashboard")
    web.add_argument("--host", help="address to bind (default: SPANE_WEB_HOST or 127.0.0.1)")
    web.add_argument("--port", type=int, help="port (default: SPANE_WEB_PORT or 8000)")
    web.set_defaults(handler=serve)

    tok = sub.add_parser("tokens", help="API tokens of `spane web`")
    tok_sub = tok.add_subparsers(dest="tokens_command", metavar="COMMAND", required=True)
    make = tok_sub.add_parser("create", help="create a token and print it (shown once)")
    make.add_argument("--tenant", help="the tenant whose executions the token sees")
    make.add_argument("--admin", action="store_true", help="a token that sees every tenant")
    make.add_argument("--label", default="", help="a note on what the token is for")
    make.add_argument("--json", action="store_true", help="print {id, token} as JSON")
    make.set_defaults(handler=create)
    listing = tok_sub.add_parser("list", help="list tokens (ids, tenants; never secrets)")
    listing.add_argument("--json", action="store_true", help="print machine-readable JSON")
    listing.set_defaults(handler=list_)
    drop = tok_sub.add_parser("revoke", help="revoke a token by its id")
    drop.add_argument("token_id", metavar="ID")
    drop.set_defaults(handler=revoke)
