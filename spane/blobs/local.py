"""Blob store in a local folder: the embedded default and the twin of S3 in tests."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from spane.blobs import base


class LocalBlobStore(base.BlobStore):
    """Keep each value in ``root/{tenant}/{digest[:2]}/{digest}``.

    A value is written to a temporary file beside its tenant's folders, synced, then renamed
    into place, so a crash never leaves a half-written object under a digest.

    Args:
        root: Folder holding every tenant's blobs; created if missing.
        compress: Store new objects zlib-compressed.
    """

    def __init__(self, root: Path | str, *, compress: bool = False) -> None:
        super().__init__(compress=compress)
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def _path(self, tenant: str, digest: str) -> Path:
        return self.root / tenant / digest[:2] / digest

    def _write(self, tenant: str, source: base.Readable, *, assume_new: bool) -> str:
        folder = self.root / tenant
        folder.mkdir(parents=True, exist_ok=True)
        # The digest is known only after the copy, so stage in the tenant folder: on the
        # same file system as the target, which keeps os.replace atomic.
        fd, staged = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                digest = base.encode(source, out, compress=self.compress)
                out.flush()
                os.fsync(out.fileno())
            target = self._path(tenant, digest)
            if assume_new or not target.exists():
                target.parent.mkdir(exist_ok=True)
                os.replace(staged, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged)
        return digest

    def _open_raw(self, tenant: str, digest: str, *, head_only: bool = False) -> base.Readable:
        try:
            return self._path(tenant, digest).open("rb")
        except FileNotFoundError:
            raise self._missing(tenant, digest) from None

    def _exists(self, tenant: str, digest: str) -> bool:
        return self._path(tenant, digest).is_file()

    def _modified(self, tenant: str, digest: str) -> float:
        try:
            return self._path(tenant, digest).stat().st_mtime
        except FileNotFoundError:
            raise self._missing(tenant, digest) from None

    def _touch(self, tenant: str, digest: str) -> None:
        # A re-used blob counts as new for garbage collection's grace period.
        with contextlib.suppress(FileNotFoundError):
            os.utime(self._path(tenant, digest))

    def _delete(self, tenant: str, digest: str) -> None:
        self._path(tenant, digest).unlink(missing_ok=True)

    def _list(self, tenant: str | None) -> Iterator[tuple[str, str]]:
        folders = [self.root / tenant] if tenant else sorted(self.root.glob("*"))
        for folder in folders:
            if not base.TENANT_RE.fullmatch(folder.name):
                continue
            # Only names that are digests: staged ".tmp-*" files are not blobs yet.
            for path in sorted(folder.glob("??/*")):
                if base.DIGEST_RE.fullmatch(path.name) and path.parent.name == path.name[:2]:
                    yield folder.name, path.name
