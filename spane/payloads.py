"""How values are written to and read from the state of record: the claim check.

Small values rest inline as JSON text. A value whose encoding exceeds the claim-check
threshold is stored once in the blob store and rests as ``@`` + its reference. An object
gathered from stored values (a join's input, an execution's ``{final_id: output}``) rests
as ``&`` + the JSON object of their stored texts, so it is composed from references and
never encoded whole. JSON text starts with neither mark, so the forms cannot be confused.
Values over the payload limit are refused before anything is written.
"""

from __future__ import annotations

from typing import Any

from . import codec
from .blobs import BlobStore
from .errors import BlobError, PayloadTooLarge

REF_MARK = "@"
#: Marks an object composed of stored values: ``&`` + ``{key: stored text}``.
COMPOSED_MARK = "&"
#: What to do about an oversized value that a node produced (rather than a caller passed).
RETURN_LESS = (
    "have the node return less (keep large data in your own storage and return its key) "
    "or raise the limit"
)


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

    def pack(self, tenant: str, value: Any, *, what: str = "value", fix: str = RETURN_LESS) -> str:
        """Encode ``value`` for storage, offloading it if it is large.

        Args:
            fix: What to do about a value over the limit (the caller passed it, or a node
                returned it).

        Raises:
            PayloadTooLarge: If the encoded value exceeds ``max_bytes``.
        """
        data = codec.encode(value)
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(
                f"{what} is {len(data)} bytes encoded, over SPANE_MAX_PAYLOAD_BYTES="
                f"{self.max_bytes}; {fix}"
            )
        if self.blobs is not None and len(data) > self.claim_check_bytes:
            return REF_MARK + self.blobs.put(tenant, data)
        return data.decode()

    def compose(self, parts: dict[str, str]) -> str:
        """Store the object ``{key: value}`` from the stored texts of its values, without
        decoding or encoding them: fifty 10 MB outputs of one join rest as fifty small
        references, not as one 500 MB value."""
        if not any(text.startswith((REF_MARK, COMPOSED_MARK)) for text in parts.values()):
            inline = "{" + ",".join(f"{codec.dumps(k)}:{v}" for k, v in parts.items()) + "}"
            if len(inline) <= self.claim_check_bytes:
                return inline  # small: one plain JSON value, as any other
        return COMPOSED_MARK + codec.dumps(parts)

    def unpack(
        self,
        tenant: str,
        text: str | None,
        *,
        what: str = "value",
        memo: dict[str, Any] | None = None,
    ) -> Any:
        """Decode a stored value (None stays None), fetching it if it was offloaded.

        Args:
            memo: Values already decoded, by stored text, shared across the calls of one
                reader: a value stored once is then decoded once and held once, however
                many parents or sinks return it (so it must be treated as read-only).

        Raises:
            BlobError: If an offloaded value is missing or corrupted; says whose it is.
        """
        if text is None:
            return None
        if text.startswith(COMPOSED_MARK):
            memo = {} if memo is None else memo
            parts = codec.loads(text[1:])
            return {
                key: self.unpack(tenant, part, what=f"{what}, member {key!r}", memo=memo)
                for key, part in parts.items()
            }
        if not text.startswith(REF_MARK):
            return codec.loads(text)
        if memo is not None and text in memo:
            return memo[text]
        if self.blobs is None:
            raise BlobError(f"{what} is stored as a blob reference but no blob store is set")
        try:
            value = codec.loads(self.blobs.get(text[1:], tenant=tenant))
        except BlobError as exc:
            raise BlobError(f"{what}: {exc}") from None
        if memo is not None:
            memo[text] = value
        return value

    @staticmethod
    def refs(text: str | None) -> list[str]:
        """The blob references a stored text holds (its own, or its members')."""
        if text is None:
            return []
        if text.startswith(REF_MARK):
            return [text[1:]]
        if text.startswith(COMPOSED_MARK):
            parts: dict[str, str] = codec.loads(text[1:])
            return [ref for part in parts.values() for ref in Payloads.refs(part)]
        return []
