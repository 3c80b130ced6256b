"""Messages Spane cannot run: rejected ones and bytes that are not a message.

Both become dead letters, once per content. ``DeadLetters`` (the middleware) calls
``record_rejected``; the undecodable-message actor takes what the encoder could not
decode (see ``encoder.UNDECODABLE``).
"""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING, Any

import dramatiq
import msgspec
import structlog
from dramatiq.middleware import CurrentMessage

from ..encoder import UNDECODABLE
from ..messages import LANE_PRIORITY, queue_name

if TYPE_CHECKING:
    from ..services import Services

log = structlog.get_logger("spane.recovery")


def declare(services: Services) -> None:
    """Declare the undecodable-message actor on the high lane of ``services.broker``."""

    def undecodable(raw: str, error: str) -> None:
        message = CurrentMessage.get_current_message()
        queue = message.queue_name if message is not None else ""
        record_undecodable(services, raw, error, queue)

    dramatiq.Actor(
        undecodable,
        broker=services.broker,
        actor_name=UNDECODABLE,
        queue_name=queue_name(services.settings, "high"),
        priority=LANE_PRIORITY["high"],
        options={},
    )


def record_rejected(services: Services, message: Any, reason: str) -> None:
    """Dead-letter a message the broker rejects, once per content.

    Messages are untrusted input, so a rejected one changes no execution: anyone who can
    write to the broker could name another execution's node in it. A node message to
    an actor this worker lacks (its node type's module is not loaded) leaves the node
    queued; the sweeper sends it again after its lease, for a worker that has the type.
    """
    if str(message.actor_name).startswith("spane.node."):
        reason += (
            "; is the node type's module loaded in the workers (SPANE_MODULES)? "
            "The node stays queued for a worker that has it"
        )
    raw = msgspec.json.encode(message.asdict(), enc_hook=repr).decode()
    # The content is the actor and its arguments: copies sent again (by the sweeper, or
    # redelivered) carry new ids and timestamps but are one dead letter.
    content = msgspec.json.encode(
        [message.queue_name, message.actor_name, message.args, message.kwargs],
        enc_hook=repr,
        order="sorted",
    )
    services.store.add_dead_letter(
        kind="message",
        digest=hashlib.sha256(content).hexdigest(),
        queue=_name(message.queue_name),
        actor=_name(message.actor_name),
        reason=reason.replace("\x00", "\\x00"),
        message=raw,  # JSON escapes NUL, which PostgreSQL text refuses
    )


def _name(value: object) -> str:
    """A queue or actor name from a message, fit for its column on every backend."""
    return str(value).replace("\x00", "\\x00")[:200]


def record_undecodable(services: Services, raw: str, error: str, queue: str = "") -> None:
    """Dead-letter a message whose bytes (``raw``, base64) could not be decoded, once per
    content. Text is kept as it is; bytes that are not text (or hold NUL, which
    PostgreSQL text refuses) are kept as ``base64:...``."""
    data = base64.b64decode(raw)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = "\x00"
    recorded = services.store.add_dead_letter(
        kind="message",
        digest=hashlib.sha256(data).hexdigest(),
        queue=queue or None,
        reason=f"message could not be decoded: {error}",
        message=text if "\x00" not in text else "base64:" + raw,
    )
    log.warning("undecodable message dead-lettered", new=recorded, error=error)
