"""Dead letters: list, show, retry. A tenant token sees its own executions' nodes only;
rejected messages, which belong to no execution, are for admin tokens."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ... import control, errors, runtime
from ...store.history import DeadLetter
from ..errors import HttpError
from ..routing import Call, Operation
from . import scope


class DeadLetterList(msgspec.Struct):
    """Dead letters, newest first."""

    items: list[DeadLetter]


class DeadLetterQuery(msgspec.Struct):
    """Which dead letters to list."""

    status: Literal["open", "retried", "all"] = "open"
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


def _visible(call: Call, dead_letter_id: int) -> DeadLetter:
    store = runtime.get().store
    missing = HttpError(404, f"no dead letter has id {dead_letter_id}")
    try:
        letter = store.dead_letter(dead_letter_id)
        if call.principal.admin:
            return letter
        if letter.execution_id is not None:
            scope.execution(call, letter.execution_id)
            return letter
    except errors.SpaneError:
        raise missing from None
    raise missing


def list_(call: Call) -> DeadLetterList:
    q: DeadLetterQuery = call.query
    letters = runtime.get().store.browse.dead_letters(
        status=None if q.status == "all" else q.status,
        tenant=call.principal.tenant,
        limit=q.limit,
    )
    return DeadLetterList(list(letters))


def show(call: Call) -> DeadLetter:
    return _visible(call, int(call.path["dead_letter_id"]))


def retry(call: Call) -> DeadLetter:
    letter = _visible(call, int(call.path["dead_letter_id"]))
    control.retry_dead_letter(letter.id)
    return runtime.get().store.dead_letter(letter.id)


_ID = "/dead-letters/{dead_letter_id:int}"
TAG = "dead letters"

OPERATIONS = [
    Operation(
        "GET",
        "/dead-letters",
        "listDeadLetters",
        "Dead letters, newest first",
        list_,
        TAG,
        query=DeadLetterQuery,
        response=DeadLetterList,
    ),
    Operation(
        "GET",
        _ID,
        "getDeadLetter",
        "A dead letter with its original message",
        show,
        TAG,
        response=DeadLetter,
    ),
    Operation(
        "POST",
        _ID + "/retry",
        "retryDeadLetter",
        "Retry: revive a node's execution, or send a message again",
        retry,
        TAG,
        response=DeadLetter,
    ),
]
