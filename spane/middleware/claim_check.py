"""Claim check for message arguments: large values travel as blob references.

Packing is ``Payloads``'s (one format at rest and in transit); this middleware applies it
at the broker's edges and holds a message's blobs until the message is acknowledged, so
that collection never takes a blob a queued or delayed message still carries.
"""

from __future__ import annotations

from typing import Any

from dramatiq import Broker, Middleware
from dramatiq.middleware import MiddlewareError

from ..errors import BlobError, PayloadTooLarge
from ..payloads import CLAIMS, HOLD, Payloads

_RESOLVED = "spane_resolved_claims"


class ArgumentTooLarge(PayloadTooLarge, MiddlewareError):
    """A message argument exceeds SPANE_MAX_PAYLOAD_BYTES; nothing was sent."""


class ArgumentUnreadable(BlobError, MiddlewareError):
    """An offloaded message argument is missing or corrupted; the message is not run."""


class ClaimCheck(Middleware):
    """Offloads keyword arguments above the claim-check threshold before a message is
    sent, and resolves them before it is processed, so actors never see a reference.

    Spane's own node and coordinator messages carry ids only: their arguments are bounded
    without being encoded, and they get no hold.

    Args:
        payloads: Packs the arguments (its threshold, limit and blob store apply).
    """

    def __init__(self, payloads: Payloads) -> None:
        self.payloads = payloads

    def before_enqueue(self, broker: Broker, message: Any, delay: int | None) -> None:
        if not message.kwargs:
            return
        try:
            self.payloads.pack_arguments(message.kwargs, message.options, message.actor_name)
        except PayloadTooLarge as exc:
            raise ArgumentTooLarge(str(exc)) from None
        if CLAIMS in message.options:
            refs = self.payloads.argument_refs(message.kwargs, message.options)
            message.options[HOLD] = self.payloads.hold(message.message_id, refs)

    def before_process_message(self, broker: Broker, message: Any) -> None:
        if not message.kwargs:
            return
        try:
            claims = self.payloads.unpack_arguments(message.kwargs, message.options)
        except BlobError as exc:
            raise ArgumentUnreadable(f"message {message.message_id}: {exc}") from None
        if claims:
            message.options[_RESOLVED] = claims

    def after_process_message(
        self,
        broker: Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        # Put the references back, so that a retried or dead-lettered message stays small.
        claims = message.options.pop(_RESOLVED, None)
        if claims:
            message.kwargs.update(claims)

    after_skip_message = after_process_message

    def after_ack(self, broker: Broker, message: Any) -> None:
        # Delivered for good, or moved on as a copy with a hold of its own: the brokers
        # enqueue a delayed message (a retry, or one due from its delay queue) as a copy,
        # so the hold this delivery came with is still the one named here.
        hold = message.options.get(HOLD)
        if hold is not None:
            self.payloads.release(hold)

    # A rejected message is recorded as a dead letter first, whose row keeps its blobs.
    after_nack = after_ack


def original_kwargs(message: Any) -> dict[str, Any]:
    """A message's keyword arguments as they were sent: offloaded ones as references."""
    return {**(message.kwargs or {}), **message.options.get(_RESOLVED, {})}
