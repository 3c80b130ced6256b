"""Claim check for message arguments: large values travel as blob references."""

from __future__ import annotations

from typing import Any

from dramatiq import Broker, Middleware
from dramatiq.middleware import MiddlewareError

from .. import codec
from ..blobs import BlobStore
from ..errors import BlobError, PayloadTooLarge

#: The key of the small object that replaces an offloaded argument.
CLAIM = "$spane_blob"
_RESOLVED = "spane_resolved_claims"
#: The tenant every message-argument blob is scoped to. Never taken from the message:
#: its options are as untrusted as its body, and a tenant named there would let a
#: crafted message resolve another tenant's blob.
MESSAGE_TENANT = "_messages"


class ArgumentTooLarge(PayloadTooLarge, MiddlewareError):
    """A message argument exceeds SPANE_MAX_PAYLOAD_BYTES; nothing was sent."""


class ArgumentUnreadable(BlobError, MiddlewareError):
    """An offloaded message argument is missing or corrupted; the message is not run."""


class ClaimCheck(Middleware):
    """Offloads keyword arguments above ``threshold`` bytes before a message is sent,
    and resolves them before it is processed, so actors never see a reference.

    Args:
        blobs: Where offloaded arguments go (None: none are offloaded).
        threshold: Encoded size above which an argument is offloaded.
    """

    def __init__(
        self, blobs: BlobStore | None, threshold: int = 51200, max_bytes: int = 256 << 20
    ) -> None:
        self.threshold = threshold
        self.max_bytes = max_bytes
        self.blobs = blobs

    def before_enqueue(self, broker: Broker, message: Any, delay: int | None) -> None:
        if self.blobs is None or not message.kwargs:
            return
        for key, value in list(message.kwargs.items()):
            if isinstance(value, dict) and CLAIM in value:
                continue
            data = codec.encode(value)
            if len(data) > self.max_bytes:
                raise ArgumentTooLarge(
                    f"argument {key!r} of a message to {message.actor_name!r} is {len(data)} "
                    f"bytes encoded, over SPANE_MAX_PAYLOAD_BYTES={self.max_bytes}"
                )
            if len(data) > self.threshold:
                message.kwargs[key] = {CLAIM: self.blobs.put(MESSAGE_TENANT, data)}

    def before_process_message(self, broker: Broker, message: Any) -> None:
        if self.blobs is None or not message.kwargs:
            return
        claims = {}
        for key, value in list(message.kwargs.items()):
            if isinstance(value, dict) and set(value) == {CLAIM}:
                try:
                    if not isinstance(value[CLAIM], str):
                        raise BlobError("the reference is not a string")
                    data = self.blobs.get(value[CLAIM], tenant=MESSAGE_TENANT)
                except BlobError as exc:
                    raise ArgumentUnreadable(
                        f"argument {key!r} of message {message.message_id}: {exc}"
                    ) from None
                message.kwargs[key] = codec.loads(data)
                claims[key] = value
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


def original_kwargs(message: Any) -> dict[str, Any]:
    """A message's keyword arguments as they were sent: offloaded ones as references."""
    return {**(message.kwargs or {}), **message.options.get(_RESOLVED, {})}
