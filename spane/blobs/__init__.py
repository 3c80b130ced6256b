"""Blob stores: where values too large for the broker and the database rest (claim check).

``open_blob_store(url)`` picks the store; ``CachingBlobStore`` keeps recent reads in memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from spane import errors
from spane.blobs.base import BlobStore, Readable, is_ref, make_ref, owned_digest, parse_ref
from spane.blobs.local import LocalBlobStore
from spane.blobs.s3 import S3BlobStore
from spane.settings import mask_url

__all__ = [
    "BlobStats",
    "BlobStore",
    "CachingBlobStore",
    "LocalBlobStore",
    "S3BlobStore",
    "is_ref",
    "make_ref",
    "open_blob_store",
    "parse_ref",
]

_FORMS = "file:///absolute/path, a plain path, or s3://bucket/prefix (each may add ?compress=1)"
_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def open_blob_store(url: str) -> BlobStore:
    """Open the blob store a URL names.

    Args:
        url: ``file:///abs/path``, a plain path, or ``s3://bucket/prefix``; any of them may
            end with ``?compress=1`` to compress new objects.

    Raises:
        ConfigurationError: The URL has none of these forms.
    """
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    compress = _FLAGS.get(options.pop("compress", "0").lower())
    if compress is None or options:
        raise errors.ConfigurationError(
            f"blob store URL {mask_url(url)!r}: the only option is compress=0|1"
        )
    if parts.scheme == "s3" and parts.netloc:
        return S3BlobStore(parts.netloc, unquote(parts.path), compress=compress)
    if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path.startswith("/"):
        return LocalBlobStore(Path(unquote(parts.path)), compress=compress)
    if not parts.scheme and parts.path:
        return LocalBlobStore(Path(parts.path), compress=compress)
    raise errors.ConfigurationError(f"blob store URL {mask_url(url)!r} is not one of: {_FORMS}")


@dataclass(frozen=True)
class BlobStats:
    """Running totals of one process's blob traffic (for metrics)."""

    put_bytes: int = 0
    read_bytes: int = 0
    hits: int = 0
    misses: int = 0


class CachingBlobStore(BlobStore):
    """Serve repeated ``get`` calls from memory, least recently used evicted first.

    Content addressing makes this safe: a reference always names the same bytes. Only ``get``
    is cached, so a fan-out reads a shared input once per worker instead of once per node.

    Args:
        inner: The store that holds the blobs.
        max_bytes: Memory budget; larger values are never cached.
    """

    def __init__(self, inner: BlobStore, max_bytes: int = 64 << 20) -> None:
        super().__init__(compress=inner.compress)
        self.inner, self.max_bytes = inner, max_bytes
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._stats = BlobStats()

    def __repr__(self) -> str:
        return f"CachingBlobStore({self.inner!r})"

    def stats(self) -> BlobStats:
        """Return this process's blob traffic so far."""
        with self._lock:
            return self._stats

    def put(self, tenant: str, data: bytes) -> str:
        """Store ``data`` for ``tenant`` unless already stored; return its reference."""
        ref = super().put(tenant, data)
        with self._lock:
            s = self._stats
            self._stats = BlobStats(s.put_bytes + len(data), s.read_bytes, s.hits, s.misses)
        return ref

    def get(self, ref: str, *, tenant: str) -> bytes:
        """Return the value ``ref`` names, from memory when it was read recently."""
        owned_digest(ref, tenant)  # before the cache, so a hit cannot cross tenants
        with self._lock:
            if (data := self._cache.get(ref)) is not None:
                self._cache.move_to_end(ref)
                s = self._stats
                self._stats = BlobStats(s.put_bytes, s.read_bytes, s.hits + 1, s.misses)
                return data
        data = self.inner.get(ref, tenant=tenant)
        with self._lock:
            s = self._stats
            self._stats = BlobStats(s.put_bytes, s.read_bytes + len(data), s.hits, s.misses + 1)
        if len(data) <= self.max_bytes:
            with self._lock:
                if ref not in self._cache:
                    self._cache[ref] = data
                    self._bytes += len(data)
                while self._bytes > self.max_bytes:
                    self._bytes -= len(self._cache.popitem(last=False)[1])
        return data

    def delete(self, ref: str) -> None:
        """Remove the value ``ref`` names, from memory too."""
        with self._lock:
            if (data := self._cache.pop(ref, None)) is not None:
                self._bytes -= len(data)
        self.inner.delete(ref)

    # Everything else goes straight to the inner store's primitives.
    def _write(self, tenant: str, source: Readable, *, assume_new: bool) -> str:
        return self.inner._write(tenant, source, assume_new=assume_new)

    def _open_raw(self, tenant: str, digest: str, *, head_only: bool = False) -> Readable:
        return self.inner._open_raw(tenant, digest, head_only=head_only)

    def _exists(self, tenant: str, digest: str) -> bool:
        return self.inner._exists(tenant, digest)

    def _delete(self, tenant: str, digest: str) -> None:
        self.inner._delete(tenant, digest)

    def _list(self, tenant: str | None) -> Iterator[tuple[str, str]]:
        return self.inner._list(tenant)

    def _modified(self, tenant: str, digest: str) -> float:
        return self.inner._modified(tenant, digest)

    def _touch(self, tenant: str, digest: str) -> None:
        self.inner._touch(tenant, digest)
