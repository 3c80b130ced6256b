"""``spane dlq``: list, show and retry dead letters."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import msgspec
from rich.console import Group, RenderableType
from rich.highlighter import JSONHighlighter
from rich.table import Table
from rich.text import Text

import spane

from .. import runtime
from ..store.history import DeadLetter
from . import render
from .commands import Streams, UsageError, embedded_note, follow, show_rows

_STATUS_STYLES = {"open": "yellow", "retried": "green"}


def _letter(dead_letter_id: int) -> DeadLetter:
    try:
        return runtime.get().store.dead_letter(dead_letter_id)
    except spane.SpaneError as exc:  # no dead letter has that id
        raise UsageError(f"{exc} (see `spane dlq list --all`)") from None


def _where(letter: DeadLetter) -> Text:
    if letter.kind == "node":
        return Text.assemble(
            (letter.execution_id or "?", ""), (" / ", "dim"), (letter.node_id or "?", "bold")
        )
    return Text.assemble((letter.queue or "?", ""), (" / ", "dim"), (letter.actor or "?", "bold"))


def table(letters: Sequence[DeadLetter]) -> Table:
    """The table of ``spane dlq list``."""
    grid = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    grid.add_column("id", justify="right", no_wrap=True)
    grid.add_column("kind", no_wrap=True)
    grid.add_column("execution / node  or  queue / actor", no_wrap=True)
    grid.add_column("reason", style="red", overflow="ellipsis", no_wrap=True, max_width=60)
    grid.add_column("created", no_wrap=True)
    grid.add_column("status", no_wrap=True)
    for letter in letters:
        grid.add_row(
            str(letter.id),
            letter.kind,
            _where(letter),
            render.one_line(letter.reason, 60),
            render.timestamp(letter.created_at),
            Text(letter.status, style=_STATUS_STYLES.get(letter.status, "")),
        )
    return grid


def list_(args: argparse.Namespace, io: Streams) -> int:
    """List dead letters, newest first (open ones unless ``--all``)."""
    letters = spane.dead_letters(status=None if args.all else "open", limit=args.limit)
    empty = "no dead letters" if args.all else "no open dead letters"
    return show_rows(args, io, letters, table, empty)


def _message(raw: str) -> Text:
    try:
        text = render.to_json(msgspec.json.decode(raw))
    except msgspec.DecodeError:
        return Text(raw)  # kept as received: it could not be decoded
    rendered = Text(text)
    JSONHighlighter().highlight(rendered)
    return rendered


def detail(letter: DeadLetter) -> Group:
    """Everything recorded about a dead letter, with its original message."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column(overflow="fold")
    fields.add_row("kind", letter.kind)
    status = Text(letter.status, style=_STATUS_STYLES.get(letter.status, ""))
    if letter.retried_at is not None:
        status.append(f" at {render.timestamp(letter.retried_at)}", style="dim")
    fields.add_row("status", status)
    if letter.kind == "node":
        fields.add_row("execution", letter.execution_id or "")
        fields.add_row("node", letter.node_id or "")
        fields.add_row("type", letter.actor or "")
    else:
        fields.add_row("queue", letter.queue or "")
        fields.add_row("actor", letter.actor or "")
    fields.add_row("created", render.timestamp(letter.created_at))
    fields.add_row("digest", Text(letter.digest, style="dim"))
    parts: list[RenderableType] = [
        Text(f"dead letter {letter.id}", style="bold"),
        fields,
        Text(),
        Text("reason", style="bold"),
        Text(letter.reason, style="red"),
        Text(),
        Text("message", style="bold"),
    ]
    if letter.message is not None:
        parts.append(_message(letter.message))
    else:
        parts.append(Text("none: a node's dead letter; retrying it replays the node", style="dim"))
    return Group(*parts)


def show(args: argparse.Namespace, io: Streams) -> int:
    """Show one dead letter in full, including the original message."""
    letter = _letter(args.dead_letter_id)
    if args.json:
        sys.stdout.write(render.to_json(letter) + "\n")
    else:
        io.out.print(detail(letter), soft_wrap=True)
    return 0


def retry(args: argparse.Namespace, io: Streams) -> int:
    """Retry a dead letter: a node's execution is revived, a message is sent again."""
    letter = _letter(args.dead_letter_id)
    spane.retry_dead_letter(letter.id)
    execution_id = letter.execution_id if letter.kind == "node" else None
    waiting = execution_id is not None and (args.wait or args.timeout is not None)
    if args.json and not waiting:
        result = {"dead_letter_id": letter.id, "kind": letter.kind, "execution_id": execution_id}
        sys.stdout.write(render.to_json(result) + "\n")
        return 0
    if execution_id is None:
        io.out.print(
            f"retried dead letter {letter.id}: its message was sent again to queue "
            f"{letter.queue} (actor {letter.actor})",
            soft_wrap=True,
            highlight=False,
        )
        return 0
    if not args.json:
        io.out.print(
            f"retried dead letter {letter.id}: node {letter.node_id} of execution "
            f"{execution_id} runs again, and the nodes after it",
            soft_wrap=True,
            highlight=False,
        )
    if waiting:
        return follow(io, execution_id, args.timeout, args.json)
    io.say(f"follow it with: spane wait {execution_id}")
    embedded_note(io, execution_id)
    return 0
