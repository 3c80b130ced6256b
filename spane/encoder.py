"""Dramatiq message encoder backed by msgspec (one encoder, one decoder, built once)."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import dramatiq
import msgspec

#: The actor that receives messages that could not be decoded.
UNDECODABLE = "spane.undecodable"


class _Message(msgspec.Struct, forbid_unknown_fields=True):
    """Exactly the fields of ``dramatiq.Message``: anything else is not a message."""

    queue_name: str
    actor_name: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    message_id: str = msgspec.field(default_factory=lambda: str(uuid.uuid4()))
    message_timestamp: int = 0


class MsgspecEncoder(dramatiq.Encoder):
    """Encodes Dramatiq messages as JSON with msgspec.

    A message that cannot be decoded does not crash the consumer: it is decoded as a
    message to the ``spane.undecodable`` actor carrying the raw bytes (base64), which
    records a dead letter.
    """

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(_Message)

    def encode(self, data: dict[str, Any]) -> bytes:
        return self._encoder.encode(data)

    def decode(self, data: bytes) -> dict[str, Any]:
        try:
            return msgspec.structs.asdict(self._decoder.decode(data))
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            return undecodable(data, str(exc))


def undecodable(data: bytes, error: str) -> dict[str, Any]:
    """The message that stands in for bytes that are not a Dramatiq message."""
    return {
        "queue_name": "undecodable",  # the consumer puts in the queue it read from
        "actor_name": UNDECODABLE,
        "args": [],
        "kwargs": {"raw": base64.b64encode(data).decode(), "error": error},
        "options": {"redis_message_id": ""},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": 0,
    }
