"""How values are written to and read from the state of record: the claim check.

Small values rest inline as JSON text. A value whose encoding exceeds the claim-check
threshold is stored once in the blob store and rests as ``@`` + its reference (JSON
text never starts with ``@``, so the two cannot be confused). Values over the payload
limit are refused before anything is written.
"""

from __future__ import annotations

from typing import Any

from . import codec
from .blobs import BlobStore
from .errors import BlobError, PayloadTooLarge

REF_MARK = "@"


class Payloads:
    """Packs values for storage and unpacks them again.

    Args:
        max_bytes: Encoded values larger than this are refused.
        claim_check_bytes: Encoded values larger than this go to ``blobs``.
        blobs: Where large values are kept (None keeps everything inline).
    """

    def __init__(
        self,
        *,
        max_bytes: int,
        claim_check_bytes: int = 51200,
        blobs: BlobStore | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.claim_check_bytes = claim_check_bytes
        self.blobs = blobs

    def pack(self, tenant: str, value: Any, *, what: str = "value") -> str:
        """Encode ``value`` for storage, offloading it if it is large.

        Raises:
            PayloadTooLarge: If the encoded value exceeds ``max_bytes``.
        """
        data = codec.encode(value)
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(
                f"{what} is {len(data)} bytes encoded, over SPANE_MAX_PAYLOAD_BYTES="
                f"{self.max_bytes}; pass a smaller value or raise the limit"
            )
        if self.blobs is not None and len(data) > self.claim_check_bytes:
            return REF_MARK + self.blobs.put(tenant, data)
        return data.decode()

    def unpack(self, tenant: str, text: str | None, *, what: str = "value") -> Any:
        """Decode a stored value (None stays None), fetching it if it was offloaded.

        Raises:
            BlobError: If an offloaded value is missing or corrupted; says whose it is.
        """
        if text is None:
            return None
        if not text.startswith(REF_MARK):
            return codec.loads(text)
        if self.blobs is None:
            raise BlobError(f"{what} is stored as a blob reference but no blob store is set")
        try:
            return codec.loads(self.blobs.get(text[1:], tenant=tenant))
        except BlobError as exc:
            raise BlobError(f"{what}: {exc}") from None

    @staticmethod
    def is_ref(text: str | None) -> bool:
        """Tell whether a stored text is a blob reference."""
        return text is not None and text.startswith(REF_MARK)
