"""The command line: ``spane COMMAND [options]`` (argparse)."""

from __future__ import annotations

import argparse

from .. import __version__
from ..durations import parse_duration
from ..registry import LANES
from ..store.records import EXECUTION_ACTIVE, EXECUTION_TERMINAL
from . import commands

_INPUT_HELP = "execution input as JSON, or @FILE to read it from a JSON file"


def _seconds(text: str) -> float:
    try:
        return parse_duration(float(text) if text.replace(".", "", 1).isdigit() else text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return number


def _start_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", metavar="JSON", help=_INPUT_HELP)
    parser.add_argument("--tenant", default="default", help="tenant to run for (default: default)")
    parser.add_argument(
        "--priority", choices=LANES, help="lane to run on (default: the workflow's)"
    )


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print machine-readable JSON and nothing else"
    )


def _timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout", type=_seconds, metavar="S", help="give up after S seconds (or 30s, 5m, ...)"
    )


def build() -> argparse.ArgumentParser:
    """Return the parser of ``spane``; each command sets ``handler``."""
    parser = argparse.ArgumentParser(
        prog="spane",
        description="Durable DAG workflows on Dramatiq, SQL and blob storage.",
        epilog="Settings come from SPANE_* environment variables; with none set, Spane runs "
        "embedded (SQLite and blobs under ./.spane).",
    )
    parser.add_argument("--version", action="version", version=f"spane {__version__}")
    parser.add_argument(
        "-m",
        "--module",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, to register its node types (repeatable; also SPANE_MODULES)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser("demo", help="run the bundled demo workflow (about 3 seconds)")
    demo.set_defaults(handler=commands.demo)

    run = sub.add_parser("run", help="register a workflow file, run it and watch it")
    run.add_argument("file", metavar="FILE", help="workflow definition (.yaml, .yml or .json)")
    _start_options(run)
    _timeout(run)
    _json(run)
    run.set_defaults(handler=commands.run)

    validate = sub.add_parser("validate", help="check a workflow file and list every problem")
    validate.add_argument("file", metavar="FILE")
    validate.set_defaults(handler=commands.validate)

    register = sub.add_parser("register", help="store a workflow file as a new version")
    register.add_argument("file", metavar="FILE")
    register.set_defaults(handler=commands.register)

    start = sub.add_parser("start", help="enqueue an execution and print its id")
    start.add_argument("workflow_id", metavar="WORKFLOW_ID")
    _start_options(start)
    start.add_argument("--idempotency-key", metavar="K", help="start at most once per key")
    _json(start)
    start.set_defaults(handler=commands.start)

    status = sub.add_parser("status", help="show an execution and its nodes")
    status.add_argument("execution_id", metavar="ID")
    _json(status)
    status.set_defaults(handler=commands.status)

    listing = sub.add_parser("list", help="list executions, newest first")
    listing.add_argument("--status", choices=EXECUTION_ACTIVE + EXECUTION_TERMINAL)
    listing.add_argument("--workflow", metavar="WORKFLOW_ID")
    listing.add_argument("--tenant")
    listing.add_argument("--limit", type=_positive, default=20, metavar="N")
    _json(listing)
    listing.set_defaults(handler=commands.list_)

    wait = sub.add_parser("wait", help="wait for an execution to end")
    wait.add_argument("execution_id", metavar="ID")
    _timeout(wait)
    _json(wait)
    wait.set_defaults(handler=commands.wait)

    cancel = sub.add_parser("cancel", help="cancel an execution and its children")
    cancel.add_argument("execution_id", metavar="ID")
    cancel.set_defaults(handler=commands.cancel)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    upgrade = db_sub.add_parser("upgrade", help="run migrations on SPANE_DATABASE_URL")
    upgrade.set_defaults(handler=commands.db_upgrade)
    return parser
