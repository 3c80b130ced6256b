"""Dramatiq message encoder backed by msgspec (one encoder, one decoder, built once)."""

from __future__ import annotations

from typing import Any

import dramatiq
import msgspec
from dramatiq.errors import DecodeError


class MsgspecEncoder(dramatiq.Encoder):  # type: ignore[misc]
    """Encodes Dramatiq messages as JSON with msgspec."""

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(dict[str, Any])

    def encode(self, data: dict[str, Any]) -> bytes:
        return self._encoder.encode(data)

    def decode(self, data: bytes) -> dict[str, Any]:
        try:
            return self._decoder.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise DecodeError(f"failed to decode message {data[:200]!r}", data, exc) from None
