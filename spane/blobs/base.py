"""Blob references, the stored format, and the rules every blob store shares.

A reference reads ``spane-blob:v1:{tenant}:{sha256}``: the digest is of the uncompressed value,
so equal values of one tenant are stored once. A stored object is a 13-byte header (magic,
codec, uncompressed size) followed by the value, raw or zlib-compressed, so any store reads
objects written with either setting of ``compress``.
"""

from __future__ import annotations

import abc
import hashlib
import io
import re
import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO, Protocol

from spane import errors

REF_PREFIX = "spane-blob:v1:"
TENANT_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DIGEST_RE = re.compile(r"[0-9a-f]{64}")
#: A reference anywhere in a text (what a stored message reaches).
REF_RE = re.compile(re.escape(REF_PREFIX) + TENANT_RE.pattern + ":" + DIGEST_RE.pattern)
CHUNK = 1 << 20

HEADER = struct.Struct(">4sBQ")  # magic, codec, uncompressed size
_MAGIC = b"SPB1"
_RAW, _ZLIB = 0, 1


class Readable(Protocol):
    """The part of a binary stream a blob store reads from (files, S3 bodies)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


def check_tenant(tenant: str) -> str:
    """Return ``tenant`` if it may name a blob namespace, else raise ``BlobError``."""
    # "." and ".." match the pattern but would climb out of a folder or key prefix.
    if not TENANT_RE.fullmatch(tenant) or tenant in (".", ".."):
        raise errors.BlobError(f"invalid tenant {tenant!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    return tenant


def make_ref(tenant: str, digest: str) -> str:
    """Build the reference of the value with SHA-256 ``digest`` owned by ``tenant``."""
    if not DIGEST_RE.fullmatch(digest):
        raise errors.BlobError(f"invalid blob digest {digest!r}")
    return f"{REF_PREFIX}{check_tenant(tenant)}:{digest}"


def parse_ref(ref: str) -> tuple[str, str]:
    """Split a reference into ``(tenant, digest)``; raise ``BlobError`` if it is not one."""
    tenant, _, digest = ref.removeprefix(REF_PREFIX).partition(":")
    if not (ref.startswith(REF_PREFIX) and DIGEST_RE.fullmatch(digest)):
        raise errors.BlobError(f"not a blob reference: {ref[:120]!r}")
    return check_tenant(tenant), digest


def owned_digest(ref: str, tenant: str) -> str:
    """Return the digest of ``ref`` if it belongs to ``tenant``, else raise ``BlobError``."""
    owner, digest = parse_ref(ref)
    if owner != tenant:
        raise errors.BlobError(f"blob {ref} belongs to another tenant than {tenant!r}")
    return digest


def is_ref(value: object) -> bool:
    """Tell whether ``value`` is a blob reference (cheap enough to test every payload)."""
    if not isinstance(value, str) or not value.startswith(REF_PREFIX) or len(value) > 200:
        return False
    try:
        parse_ref(value)
    except errors.BlobError:
        return False
    return True


def encode(source: Readable, target: BinaryIO, *, compress: bool) -> str:
    """Copy ``source`` to the seekable ``target`` in stored form, in one pass.

    Returns:
        The SHA-256 hex digest of the uncompressed bytes.
    """
    start = target.tell()
    target.write(HEADER.pack(_MAGIC, _RAW, 0))  # size is unknown until the end
    hasher, size = hashlib.sha256(), 0
    packer = zlib.compressobj() if compress else None
    while chunk := source.read(CHUNK):
        hasher.update(chunk)
        size += len(chunk)
        target.write(packer.compress(chunk) if packer else chunk)
    if packer:
        target.write(packer.flush())
    end = target.tell()
    target.seek(start)
    target.write(HEADER.pack(_MAGIC, _ZLIB if packer else _RAW, size))
    target.seek(end)
    return hasher.hexdigest()


def read_header(raw: Readable, ref: str) -> tuple[bool, int]:
    """Read a stored object's header; return ``(compressed, uncompressed size)``."""
    head = raw.read(HEADER.size)
    magic, codec, size = HEADER.unpack(head) if len(head) == HEADER.size else (b"", -1, 0)
    if magic != _MAGIC or codec not in (_RAW, _ZLIB):
        raise errors.BlobError(f"blob {ref} is corrupted: bad header")
    return codec == _ZLIB, size


class VerifyingReader(io.RawIOBase):
    """Decode a stored object while hashing it; the last read raises if it is corrupted.

    Bytes are handed out before the end is checked: only a reader that reaches EOF
    without ``BlobError`` has seen the value the reference names.
    """

    def __init__(self, raw: Readable, ref: str, digest: str) -> None:
        self._raw, self._ref, self._digest = raw, ref, digest
        compressed, self._size = read_header(raw, ref)
        self._unpacker = zlib.decompressobj() if compressed else None
        self._hasher, self._seen = hashlib.sha256(), 0
        self._pending = memoryview(b"")  # slicing a view copies nothing

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = self._raw.read(CHUNK)
            if not chunk:
                self._finish()
                return 0
            self._pending = memoryview(self._decode(chunk))
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _decode(self, chunk: bytes) -> bytes:
        try:
            data = self._unpacker.decompress(chunk) if self._unpacker else chunk
        except zlib.error as exc:
            raise self._corrupted("undecodable data") from exc
        self._hasher.update(data)
        self._seen += len(data)
        return data

    def _finish(self) -> None:
        if self._unpacker and (not self._unpacker.eof or self._unpacker.unused_data):
            raise self._corrupted("truncated or trailing data")
        if self._seen != self._size or self._hasher.hexdigest() != self._digest:
            raise self._corrupted("content does not match its hash")

    def _corrupted(self, why: str) -> errors.BlobError:
        return errors.BlobError(f"blob {self._ref} is corrupted: {why}")

    def close(self) -> None:
        self._raw.close()
        super().close()


class BlobStore(abc.ABC):
    """Content-addressed, tenant-scoped storage of large values.

    Subclasses store objects under ``(tenant, digest)`` through five primitives; this class
    owns references, hashing, compression and verification.

    Args:
        compress: Store new objects zlib-compressed (reading works either way).
    """

    def __init__(self, *, compress: bool = False) -> None:
        self.compress = compress

    def put(self, tenant: str, data: bytes) -> str:
        """Store ``data`` for ``tenant`` unless already stored; return its reference."""
        digest = hashlib.sha256(data).hexdigest()
        ref = make_ref(tenant, digest)
        if not self._exists(tenant, digest):
            self._write(tenant, io.BytesIO(data), assume_new=True)
        else:
            self._touch(tenant, digest)
        return ref

    def put_stream(self, tenant: str, fileobj: Readable) -> str:
        """Store what ``fileobj`` yields to its end, in one pass; return its reference."""
        return make_ref(tenant, self._write(check_tenant(tenant), fileobj, assume_new=False))

    def get(self, ref: str, *, tenant: str) -> bytes:
        """Return the value ``ref`` names, checked against its hash and ``tenant``."""
        with self.open(ref, tenant=tenant) as stream:
            return stream.read()

    def open(self, ref: str, *, tenant: str) -> io.BufferedReader:
        """Stream the value ``ref`` names; the read reaching EOF checks its hash."""
        digest = owned_digest(ref, tenant)
        return io.BufferedReader(VerifyingReader(self._open_raw(tenant, digest), ref, digest))

    def size(self, ref: str) -> int:
        """Return the uncompressed size in bytes of the value ``ref`` names."""
        raw = self._open_raw(*parse_ref(ref), head_only=True)
        try:
            return read_header(raw, ref)[1]
        finally:
            raw.close()

    def exists(self, ref: str) -> bool:
        """Tell whether the value ``ref`` names is stored."""
        return self._exists(*parse_ref(ref))

    def delete(self, ref: str) -> None:
        """Remove the value ``ref`` names; removing a missing value is not an error."""
        self._delete(*parse_ref(ref))

    def modified(self, ref: str) -> float:
        """Return when the value ``ref`` names was last written (epoch seconds)."""
        return self._modified(*parse_ref(ref))

    def iter_refs(self, tenant: str | None = None) -> Iterator[str]:
        """Yield the reference of every stored value, or of ``tenant``'s (for collection)."""
        for owner, digest in self._list(None if tenant is None else check_tenant(tenant)):
            yield make_ref(owner, digest)

    @abc.abstractmethod
    def _write(self, tenant: str, source: Readable, *, assume_new: bool) -> str:
        """Store ``source`` with :func:`encode`, unless present; return its digest.

        ``assume_new`` skips the presence check when the caller just made it.
        """

    @abc.abstractmethod
    def _open_raw(self, tenant: str, digest: str, *, head_only: bool = False) -> Readable:
        """Open the stored object (at least its header if ``head_only``); raise if missing."""

    @abc.abstractmethod
    def _exists(self, tenant: str, digest: str) -> bool: ...

    @abc.abstractmethod
    def _delete(self, tenant: str, digest: str) -> None: ...

    @abc.abstractmethod
    def _list(self, tenant: str | None) -> Iterator[tuple[str, str]]: ...

    @abc.abstractmethod
    def _modified(self, tenant: str, digest: str) -> float: ...

    def _touch(self, tenant: str, digest: str) -> None:  # noqa: B027 (optional hook)
        """Mark a stored value as written now (a store that cannot is left as it is)."""

    def _missing(self, tenant: str, digest: str) -> errors.BlobError:
        return errors.BlobError(f"blob {make_ref(tenant, digest)} is missing from {self!r}")
