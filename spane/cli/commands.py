"""What each ``spane`` command does; every handler returns the process exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from rich.console import Console, RenderableType
from rich.text import Text

import spane

from .. import migrations, runtime, validation
from ..settings import from_env
from ..statuses import ExecutionStatus
from ..store import Execution, make_engine
from . import render, watch

DEMO_DEFINITION = "examples/demo.yaml"
DEMO_CHILD = "demo-invoice.yaml"

T = TypeVar("T")


@dataclass(frozen=True)
class Streams:
    """Where a command writes: results to ``out``, notes and errors to ``err``."""

    out: Console
    err: Console

    def say(self, line: str) -> None:
        """Print a result line as is: not wrapped, not highlighted (ids stay whole)."""
        self.out.print(line, soft_wrap=True, highlight=False)


def show_rows(
    args: argparse.Namespace,
    io: Streams,
    rows: Sequence[T],
    table: Callable[[Sequence[T]], RenderableType],
    empty: str,
) -> int:
    """Print a listing: JSON with ``--json``, else ``table(rows)``, or ``empty`` (dim) when
    there is nothing to list."""
    if args.json:
        sys.stdout.write(render.to_json(rows) + "\n")
    elif rows:
        io.out.print(table(rows))
    else:
        io.out.print(empty, style="dim")
    return 0


class UsageError(spane.SpaneError):
    """What the command names does not exist or cannot be used (exit code 2)."""


def exit_code(execution: Execution) -> int:
    """0 for a completed execution, 1 for a failed or cancelled one."""
    return 0 if execution.status == ExecutionStatus.COMPLETED else 1


def parse_input(raw: str | None) -> Any:
    """Decode ``--input``: JSON text, or ``@FILE`` naming a JSON file.

    Raises:
        InputError: If the file cannot be read or the text is not JSON.
    """
    if raw is None:
        return None
    where = "--input"
    if raw.startswith("@"):
        where = f"input file {raw[1:]!r}"
        raw = _read_bounded(raw[1:], where)
    try:
        return msgspec.json.decode(raw)
    except RecursionError:
        raise spane.InputError(f"{where} is nested too deeply; flatten it") from None
    except msgspec.DecodeError as exc:
        raise spane.InputError(
            f'{where} is not valid JSON ({exc}); e.g. --input \'{{"order_id": "A-1"}}\' '
            "or --input @input.json"
        ) from None


def _read_bounded(path: str, where: str) -> str:
    """Read an input file, refusing one larger than an input may be (``/dev/zero`` and
    other endless files included) before reading more than that."""
    limit = runtime.get().settings.max_payload_bytes
    try:
        with open(path, "rb") as file:
            data = file.read(limit + 1)
        if len(data) > limit:
            raise spane.InputError(
                f"{where} is larger than SPANE_MAX_PAYLOAD_BYTES={limit}; pass a smaller "
                "file or raise the limit"
            )
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise spane.InputError(f"cannot read {where}: {reason}") from None


def print_problems(console: Console, error: spane.DefinitionError) -> None:
    """Print each problem of a definition on its own line, path first."""
    title = str(error).splitlines()[0].rstrip(":")
    console.print(Text(f"✘ {title}", style="bold red"), soft_wrap=True)
    for problem in error.problems:
        line = Text("  ")
        if problem.path:
            line.append(problem.path, style="bold cyan").append(": ")
        # Continuation lines (e.g. a JMESPath caret) stay indented under their problem.
        console.print(line.append(problem.message.replace("\n", "\n    ")), soft_wrap=True)
    if any("unknown node type" in p.message for p in error.problems):
        hint = "hint: import the module that registers it: spane -m MODULE ... or SPANE_MODULES"
        console.print(Text(hint, style="dim"), soft_wrap=True)


def report(io: Streams, execution: Execution, as_json: bool) -> int:
    """Print an execution that ended (JSON or summary); return its exit code."""
    if as_json:
        sys.stdout.write(render.to_json(execution) + "\n")
    else:
        io.out.print(render.summary(execution))
    return exit_code(execution)


def follow(io: Streams, execution_id: str, timeout: float | None, as_json: bool) -> int:
    """Wait for an execution to end (live on a terminal), then report it."""
    if as_json:
        execution = spane.wait(execution_id, timeout=timeout)
    else:
        execution = watch.follow(io.out, execution_id, timeout=timeout)
    return report(io, execution, as_json)


def embedded_note(io: Streams, execution_id: str) -> None:
    """Warn that the embedded worker of this command stops when the command ends."""
    if runtime.get().settings.embedded:
        io.err.print(
            "note: SPANE_BROKER_URL is unset, so this process is the only worker and it stops "
            f"when the command ends; add --wait, or run `spane wait {execution_id}`, to see "
            "it through.",
            style="yellow",
            soft_wrap=True,
            highlight=False,
        )


def demo(args: argparse.Namespace, io: Streams) -> int:
    """Register the bundled demo workflow and run it with a sample order."""
    from .. import demo as demo_types  # registers the demo's node types

    examples = resources.files("spane").joinpath("examples")
    spane.register_workflow(examples.joinpath(DEMO_CHILD).read_text(encoding="utf-8"))
    definition = resources.files("spane").joinpath(DEMO_DEFINITION).read_text(encoding="utf-8")
    workflow_id, _ = spane.register_workflow(definition)
    io.out.print(
        Text.assemble(
            ("Spane demo", "bold"),
            ": an order pipeline with a branch, a join, a durable 1s timer, a retry and a\n"
            "sub-workflow whose ~80 KB invoice travels through the blob store (claim check).\n",
            ("input ", "dim"),
            (msgspec.json.encode(demo_types.SAMPLE_INPUT).decode(), "dim"),
        ),
        soft_wrap=True,
    )
    if not runtime.get().settings.embedded:
        io.err.print(
            "note: SPANE_BROKER_URL is set, so workers run the demo; they must import "
            "spane.demo (dramatiq spane.actors spane.demo).",
            style="yellow",
            soft_wrap=True,
        )
    execution_id = spane.enqueue_workflow(workflow_id, demo_types.SAMPLE_INPUT)
    return follow(io, execution_id, None, as_json=False)


def run(args: argparse.Namespace, io: Streams) -> int:
    """Register a workflow file, start it and follow it to the end."""
    value = parse_input(args.input)
    workflow_id, _ = spane.register_workflow(Path(args.file))
    execution_id = spane.enqueue_workflow(
        workflow_id, value, tenant=args.tenant, priority=args.priority
    )
    return follow(io, execution_id, args.timeout, args.json)


def validate(args: argparse.Namespace, io: Streams) -> int:
    """Check a workflow file offline; sub-workflow targets are looked up on ``register``."""
    try:
        workflow = validation.load_definition(Path(args.file))
    except spane.DefinitionError as exc:
        print_problems(io.out, exc)
        return 1
    count = len(workflow.nodes)
    message = f"✔ {args.file}: workflow {workflow.id!r} is valid ({count} node"
    io.out.print(Text(message + ("s)" if count != 1 else ")"), style="green"), soft_wrap=True)
    return 0


def register(args: argparse.Namespace, io: Streams) -> int:
    """Store a workflow file; an unchanged definition keeps its version."""
    workflow = validation.load_definition(Path(args.file))
    latest = runtime.get().store.latest_version(workflow.id)
    workflow_id, version = spane.register_workflow(workflow)
    if version == latest:
        note = Text(" (unchanged: same definition as the latest version)", style="dim")
    else:
        note = Text(" (new version)", style="green")
    io.out.print(Text.assemble(f"{workflow_id} version {version}", note), soft_wrap=True)
    return 0


def start(args: argparse.Namespace, io: Streams) -> int:
    """Enqueue an execution and print its id (workers run it)."""
    value = parse_input(args.input)
    execution_id = spane.enqueue_workflow(
        args.workflow_id,
        value,
        tenant=args.tenant,
        priority=args.priority,
        idempotency_key=args.idempotency_key,
        delay=args.delay,
        at=args.at,
    )
    if args.json:
        sys.stdout.write(render.to_json({"execution_id": execution_id}) + "\n")
    else:
        io.say(execution_id)
    if runtime.get().settings.embedded:
        io.err.print(
            "note: SPANE_BROKER_URL is unset, so this process is the only worker and it stops "
            "when the command ends; use `spane run` to run a workflow embedded.",
            style="yellow",
            soft_wrap=True,
        )
    return 0


def status(args: argparse.Namespace, io: Streams) -> int:
    """Show an execution with its nodes."""
    execution = spane.get_execution(args.execution_id)
    if args.json:
        sys.stdout.write(render.to_json(execution) + "\n")
    else:
        io.out.print(render.summary(execution))
    return 0


def list_(args: argparse.Namespace, io: Streams) -> int:
    """List executions, newest first."""
    rows = spane.list_executions(
        status=args.status, workflow_id=args.workflow, tenant=args.tenant, limit=args.limit
    )
    return show_rows(args, io, rows, render.executions_table, "no executions")


def wait(args: argparse.Namespace, io: Streams) -> int:
    """Wait for an execution to end; the exit code tells how it ended."""
    return follow(io, args.execution_id, args.timeout, args.json)


def cancel(args: argparse.Namespace, io: Streams) -> int:
    """Cancel an execution and its children."""
    spane.cancel(args.execution_id)
    io.say(f"cancelled {args.execution_id}")
    return 0


def db_upgrade(args: argparse.Namespace, io: Streams) -> int:
    """Bring the schema of SPANE_DATABASE_URL up to date."""
    from sqlalchemy.engine import make_url

    url = from_env().database_url
    engine = make_engine(url)
    try:
        migrations.upgrade(engine)
    finally:
        engine.dispose()
    shown = make_url(url).render_as_string(hide_password=True)
    io.say(f"database {shown} is up to date")
    return 0
