"""The claim check: the one place values are packed to rest or travel, and unpacked again.

A packed value is a text, one format everywhere (database columns and messages alike):

- JSON text, for a value whose encoding is at most the claim-check threshold;
- ``@`` + a blob reference (``@spane-blob:v1:{tenant}:{sha256}``), for a larger value: it
  rests once in the blob store;
- ``&`` + the JSON object of packed texts, for an object gathered from packed values (a
  join's input, an execution's ``{sink: output}``): composed, never encoded whole.

JSON text starts with neither mark, so the forms cannot be confused. A message argument
is any JSON value, so one that travels offloaded is replaced by its ``@`` text and named
in the message option ``spane_claims``: only that option makes a string a reference.

Reader for the previous release: its messages (and the dead letters it stored) carry an
offloaded argument as ``{"$spane_blob": reference}``; ``unpack_arguments`` still resolves
them. Its rows at rest need nothing: they were written in this format.
"""

from __future__ import annotations

import uuid
from typing import Any

from . import codec
from .blobs import BlobStore, is_ref, parse_ref
from .blobs.base import REF_RE
from .errors import BlobError, PayloadTooLarge

REF_MARK = "@"
#: Marks an object composed of stored values: ``&`` + ``{key: stored text}``.
COMPOSED_MARK = "&"
#: Message option naming the arguments that travel as ``@`` references.
CLAIMS = "spane_claims"
#: Message option naming the hold that keeps the message's blobs from collection.
HOLD = "spane_hold"
#: The tenant every message-argument blob is scoped to. Never taken from the message:
#: its options are as untrusted as its body.
MESSAGE_TENANT = "_messages"
#: Where holds rest: small blobs listing the references an undelivered message carries.
HOLD_TENANT = "_holds"
#: The previous release's form of an offloaded argument (read, never written).
LEGACY_CLAIM = "$spane_blob"
#: What to do about an oversized value that a node produced (rather than a caller passed).
RETURN_LESS = (
    "have the node return less (keep large data in your own storage and return its key) "
    "or raise the limit"
)
#: Longest JSON of a number, boolean or null measured without encoding it.
_SCALAR_BYTES = 32


class Payloads:
    """Packs values for storage and transit and unpacks them again.

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

    # -- at rest ----------------------------------------------------------------------------

    def pack(self, tenant: str, value: Any, *, what: str = "value", fix: str = RETURN_LESS) -> str:
        """Encode ``value`` for storage, offloading it if it is large.

        Args:
            fix: What to do about a value over the limit (the caller passed it, or a node
                returned it).

        Raises:
            PayloadTooLarge: If the encoded value exceeds ``max_bytes``.
        """
        data = self._checked(value, what, fix)
        if self.blobs is not None and len(data) > self.claim_check_bytes:
            return REF_MARK + self.blobs.put(tenant, data)
        return data.decode()

    def compose(self, parts: dict[str, str]) -> str:
        """Store the object ``{key: value}`` from the stored texts of its values, without
        decoding or encoding them: fifty 10 MB outputs of one join rest as fifty small
        references, not as one 500 MB value."""
        if all(self.inline(text) for text in parts.values()):
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
        value = codec.loads(self._fetch(tenant, text[1:], what))
        if memo is not None:
            memo[text] = value
        return value

    def encoded(self, tenant: str, text: str | None, *, what: str = "value") -> bytes:
        """The JSON of a stored value; an offloaded one is read as stored, not decoded."""
        if text is None:
            return b"null"
        if text.startswith(REF_MARK):
            return self._fetch(tenant, text[1:], what)
        if text.startswith(COMPOSED_MARK):
            return codec.encode(self.unpack(tenant, text, what=what))
        return text.encode()

    @staticmethod
    def inline(text: str | None) -> bool:
        """Tell whether a stored text is the value's own JSON (None included)."""
        return text is None or not text.startswith((REF_MARK, COMPOSED_MARK))

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

    # -- in messages ------------------------------------------------------------------------

    def pack_arguments(self, kwargs: dict[str, Any], options: dict[str, Any], actor: str) -> None:
        """Offload, in place, the keyword arguments of a message that are large.

        Numbers, booleans, null and short strings (all an id-only message carries) are
        bounded without being encoded; only other values are measured.

        Raises:
            PayloadTooLarge: If an argument exceeds ``max_bytes``; the message is unchanged.
        """
        claimed = set(options.get(CLAIMS) or ())
        packed: dict[str, str] = {}
        for key, value in kwargs.items():
            if key in claimed or _bounded(value, min(self.claim_check_bytes, self.max_bytes)):
                continue
            text = self.pack_argument(key, value, actor)
            if text is not None:
                packed[key] = text
        if packed:
            kwargs.update(packed)
            options[CLAIMS] = sorted(claimed | packed.keys())

    def pack_argument(self, key: str, value: Any, actor: str) -> str | None:
        """Measure one argument; return its ``@`` text if it is offloaded, else None."""
        what = f"argument {key!r} of a message to {actor!r}"
        data = self._checked(value, what, "send a smaller value or raise the limit")
        if self.blobs is None or len(data) <= self.claim_check_bytes:
            return None
        return REF_MARK + self.blobs.put(MESSAGE_TENANT, data)

    def unpack_arguments(self, kwargs: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
        """Resolve, in place, the offloaded arguments of a message; return them as they
        travelled, to put back before the message is retried or dead-lettered.

        Raises:
            BlobError: If an argument named a claim is not a reference, or its blob is
                missing, corrupted or not a message blob.
        """
        claims = {key: kwargs.get(key) for key in options.get(CLAIMS) or ()}
        if not claims:  # perhaps a message of the previous release
            claims = {key: value for key, value in kwargs.items() if _legacy_ref(value)}
        for key, claim in claims.items():
            is_text = isinstance(claim, str) and claim.startswith(REF_MARK)
            ref = str(claim)[1:] if is_text else _legacy_ref(claim)
            if ref is None:
                raise BlobError(f"argument {key!r} is named a claim but is not a reference")
            kwargs[key] = codec.loads(self._fetch(MESSAGE_TENANT, ref, f"argument {key!r}"))
        return claims

    @staticmethod
    def argument_refs(kwargs: dict[str, Any], options: dict[str, Any]) -> list[str]:
        """The blob references a message's arguments travel as."""
        texts = (kwargs.get(key) for key in options.get(CLAIMS) or ())
        return [text[1:] for text in texts if isinstance(text, str) and is_ref(text[1:])]

    @staticmethod
    def message_refs(raw: str) -> list[str]:
        """Every blob reference in a stored message (a dead letter), in either release's
        form: the refs it reaches if it is sent again."""
        return REF_RE.findall(raw)

    # -- holds: blobs an undelivered message still needs ------------------------------------

    def hold(self, message_id: str, refs: list[str]) -> str | None:
        """Keep ``refs`` from collection until ``release`` of the returned hold.

        Each call makes a new hold (a retried message is held again before the delivery
        that failed is acknowledged and releases its own).
        """
        if self.blobs is None or not refs:
            return None
        note = {"message_id": message_id, "nonce": uuid.uuid4().hex, "refs": refs}
        return self.blobs.put(HOLD_TENANT, codec.encode(note))

    def release(self, hold: object) -> None:
        """Drop a hold; anything but a hold reference (options are untrusted) is ignored."""
        if self.blobs is not None and is_ref(hold) and parse_ref(str(hold))[0] == HOLD_TENANT:
            self.blobs.delete(str(hold))

    def held(self) -> tuple[set[str], set[str]]:
        """Return the holds and the references they keep, for collection."""
        holds: set[str] = set()
        kept: set[str] = set()
        if self.blobs is None:
            return holds, kept
        for hold in self.blobs.iter_refs(HOLD_TENANT):
            holds.add(hold)
            try:
                note = codec.loads(self.blobs.get(hold, tenant=HOLD_TENANT))
            except BlobError:
                continue  # released meanwhile
            refs = note.get("refs") if isinstance(note, dict) else None
            kept.update(ref for ref in refs or () if isinstance(ref, str))
        return holds, kept

    # -- shared -----------------------------------------------------------------------------

    def _checked(self, value: Any, what: str, fix: str) -> bytes:
        data = codec.encode(value)
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(
                f"{what} is {len(data)} bytes encoded, over SPANE_MAX_PAYLOAD_BYTES="
                f"{self.max_bytes}; {fix}"
            )
        return data

    def _fetch(self, tenant: str, ref: str, what: str) -> bytes:
        if self.blobs is None:
            raise BlobError(f"{what} is stored as a blob reference but no blob store is set")
        try:
            return self.blobs.get(ref, tenant=tenant)
        except BlobError as exc:
            raise BlobError(f"{what}: {exc}") from None


def _legacy_ref(value: Any) -> str | None:
    """The reference of an argument in the previous release's form, else None."""
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get(LEGACY_CLAIM), str):
        return str(value[LEGACY_CLAIM])
    return None


def _bounded(value: Any, limit: int) -> bool:
    """Tell, without encoding it, that ``value``'s JSON is at most ``limit`` bytes."""
    if value is None or isinstance(value, bool | float):
        return limit >= _SCALAR_BYTES
    if isinstance(value, int):
        return value.bit_length() <= 64 and limit >= _SCALAR_BYTES
    if isinstance(value, str):
        return 6 * len(value) + 2 <= limit  # at most \u00XX per character, and quotes
    return False
