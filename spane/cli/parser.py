"""The command line: ``spane COMMAND [options]`` (argparse)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .. import __version__
from ..durations import parse_duration
from ..registry import LANES
from ..statuses import ExecutionStatus
from . import breakers, commands, control, deadletters, lanes, operations, starting, web
from .commands import Streams

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
    if not 1 <= number < 2**63:  # ids and counts are 64-bit integers in the database
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to {2**63 - 1}, got {text!r}"
        )
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


def _wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait", action="store_true", help="follow the execution to its end; exit code as `wait`"
    )
    parser.add_argument(
        "--timeout", type=_seconds, metavar="S", help="wait at most S seconds (implies --wait)"
    )
    _json(parser)


def _on_execution(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_: str,
    handler: Callable[[argparse.Namespace, Streams], int],
) -> argparse.ArgumentParser:
    """Add the command ``NAME ID`` on one execution, run by ``handler``."""
    parser = sub.add_parser(name, help=help_)
    parser.add_argument("execution_id", metavar="ID")
    parser.set_defaults(handler=handler)
    return parser


def _controls(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _on_execution(sub, "pause", "pause an execution: no new node starts", control.pause)

    resume = _on_execution(
        sub, "resume", "resume a paused execution where it stopped", control.resume
    )
    _wait(resume)

    replay = _on_execution(
        sub, "replay", "re-run failed nodes (or --from NODE) and all after them", control.replay
    )
    replay.add_argument(
        "--from",
        dest="from_node",
        metavar="NODE",
        help="re-run this node and all after it (upstream outputs are kept)",
    )
    _wait(replay)

    rerun = _on_execution(
        sub, "rerun", "start a copy of an execution (same input); print its id", control.rerun
    )
    _wait(rerun)

    history = _on_execution(
        sub, "history", "list the recorded events of an execution", control.history
    )
    history.add_argument("--full", action="store_true", help="show whole details (errors)")
    _json(history)

    dlq = sub.add_parser("dlq", help="dead letters: failed nodes and rejected messages")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", metavar="COMMAND", required=True)
    listing = dlq_sub.add_parser("list", help="list dead letters, newest first")
    listing.add_argument("--all", action="store_true", help="include retried ones")
    listing.add_argument("--limit", type=_positive, default=20, metavar="N")
    _json(listing)
    listing.set_defaults(handler=deadletters.list_)
    show = dlq_sub.add_parser("show", help="show a dead letter with its original message")
    show.add_argument("dead_letter_id", type=_positive, metavar="ID")
    _json(show)
    show.set_defaults(handler=deadletters.show)
    retry = dlq_sub.add_parser("retry", help="replay a dead node, or send a message again")
    retry.add_argument("dead_letter_id", type=_positive, metavar="ID")
    _wait(retry)
    retry.set_defaults(handler=deadletters.retry)

    guards = sub.add_parser("breakers", help="list circuit breakers; reset one")
    _json(guards)
    guards.set_defaults(handler=breakers.list_)
    guards_sub = guards.add_subparsers(dest="breakers_command", metavar="COMMAND")
    reset = guards_sub.add_parser("reset", help="close a circuit breaker now, for every worker")
    reset.add_argument("name", metavar="NAME")
    reset.set_defaults(handler=breakers.reset)

    gc = sub.add_parser("gc", help="delete old finished executions and unreferenced blobs")
    gc.add_argument(
        "--older-than",
        type=_seconds,
        required=True,
        metavar="AGE",
        help="delete executions that ended more than AGE ago (e.g. 30d, 12h)",
    )
    gc.add_argument(
        "--grace",
        type=_seconds,
        default=3600.0,
        metavar="AGE",
        help="keep unreferenced blobs written less than AGE ago (default: 1h)",
    )
    _json(gc)
    gc.set_defaults(handler=control.gc)


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
    when = start.add_mutually_exclusive_group()
    when.add_argument("--in", dest="delay", type=_seconds, metavar="DELAY", help="start in DELAY")
    when.add_argument("--at", type=starting.start_at, metavar="ISO", help="start at ISO time")
    _json(start)
    start.set_defaults(handler=commands.start)

    status = _on_execution(sub, "status", "show an execution and its nodes", commands.status)
    _json(status)

    listing = sub.add_parser("list", help="list executions, newest first")
    listing.add_argument("--status", choices=list(ExecutionStatus))
    listing.add_argument("--workflow", metavar="WORKFLOW_ID")
    listing.add_argument("--tenant")
    listing.add_argument("--limit", type=_positive, default=20, metavar="N")
    _json(listing)
    listing.set_defaults(handler=commands.list_)

    wait = _on_execution(sub, "wait", "wait for an execution to end", commands.wait)
    _timeout(wait)
    _json(wait)

    _on_execution(sub, "cancel", "cancel an execution and its children", commands.cancel)

    _controls(sub)
    starting.add_commands(sub)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    upgrade = db_sub.add_parser("upgrade", help="run migrations on SPANE_DATABASE_URL")
    upgrade.set_defaults(handler=commands.db_upgrade)

    web.add_commands(sub)
    _operations(sub)
    return parser


def _operations(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    workers = sub.add_parser("workers", help="list live workers and what they serve")
    _json(workers)
    workers.set_defaults(handler=operations.workers)

    lane = sub.add_parser(
        "lanes", help="per lane and tenant: nodes ready, in flight, oldest wait; workers serving"
    )
    lane.add_argument("--tenant", help="only this tenant's work")
    _json(lane)
    lane.set_defaults(handler=lanes.list_)

    metrics = sub.add_parser(
        "metrics", help="print queue depth, ready nodes and dead letters once (Prometheus text)"
    )
    metrics.set_defaults(handler=operations.metrics)
