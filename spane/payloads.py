"""How values are written to and read from the state of record.

Small values rest inline as JSON text; the claim check (large values as blob
references) hooks in here so the store never sees the difference.
"""

from __future__ import annotations

from typing import Any

from . import codec
from .errors import PayloadTooLarge


class Payloads:
    """Packs values for storage and unpacks them again.

    Args:
        max_bytes: Encoded values larger than this are refused.
    """

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def pack(self, tenant: str, value: Any, *, what: str = "value") -> str:
        """Encode ``value`` for storage.

        Raises:
            PayloadTooLarge: If the encoded value exceeds ``max_bytes``.
        """
        text = codec.dumps(value)
        if len(text) > self.max_bytes:
            raise PayloadTooLarge(
                f"{what} is {len(text)} bytes encoded, over SPANE_MAX_PAYLOAD_BYTES="
                f"{self.max_bytes}; pass a smaller value or raise the limit"
            )
        return text

    def unpack(self, tenant: str, text: str | None, *, what: str = "value") -> Any:
        """Decode a stored value (None stays None)."""
        return None if text is None else codec.loads(text)
