"""Dramatiq message encoder backed by msgspec (one encoder, one decoder, built once)."""

from __future__ import annotations

import uuid
from typing import Any

import dramatiq
import msgspec

#: The actor that receives messages that could not be decoded.
UNDECODABLE = "spane.undecodable"


class MsgspecEncoder(dramatiq.Encoder):
    """Encodes Dramatiq messages as JSON with msgspec.

    A message that cannot be decoded does not crash the consumer: it is decoded as a
    message to the ``spane.undecodable`` actor carrying the raw bytes, which records a
    dead letter.
    """

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(dict[str, Any])

    def encode(self, data: dict[str, Any]) -> bytes:
        return self._encoder.encode(data)

    def decode(self, data: bytes) -> dict[str, Any]:
        try:
            message = self._decoder.decode(data)
            missing = {"queue_name", "actor_name", "message_id"} - message.keys()
            if missing:
                raise ValueError(f"missing {sorted(missing)}")
            return message
        except (msgspec.DecodeError, UnicodeDecodeError, ValueError) as exc:
            return {
                "queue_name": "undecodable",
                "actor_name": UNDECODABLE,
                "args": [],
                "kwargs": {"raw": data.decode("utf-8", "replace"), "error": str(exc)},
                "options": {"redis_message_id": str(uuid.uuid4())},
                "message_id": str(uuid.uuid4()),
                "message_timestamp": 0,
            }
