"""Blob store in an S3 bucket (or any S3-compatible service)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from spane import errors
from spane.blobs import base

# Values up to this size are sent in one request and spooled in memory; larger ones go
# through a temporary file and boto3's multipart transfer (which starts at 8 MiB too).
SINGLE_PUT_BYTES = 8 << 20


def _client() -> Any:
    try:
        import boto3
    except ImportError:  # boto3 is a dependency, but only this store needs it
        raise errors.ConfigurationError(
            "the S3 blob store needs boto3: pip install boto3"
        ) from None
    # Recent boto3 reads AWS_ENDPOINT_URL itself; passing it keeps older ones on target too.
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    # A session per store: boto3's default session is not safe to share across threads.
    session = boto3.session.Session()
    if session.get_credentials() is None:
        # Found now, at start, rather than by the first enqueue that offloads a value.
        raise errors.ConfigurationError(
            "SPANE_BLOB_URL names an S3 bucket but no AWS credentials were found: set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or use a "
            "file:/// blob URL"
        )
    return session.client("s3", endpoint_url=endpoint or None)


class S3BlobStore(base.BlobStore):
    """Keep each value at ``{prefix}/{tenant}/{digest}`` in ``bucket``.

    Credentials, region and endpoint come from the standard ``AWS_*`` settings.

    Args:
        bucket: Bucket name; it must exist.
        prefix: Key prefix shared by every blob, without trailing slash.
        client: A boto3 S3 client to use instead of one built from the environment.
        compress: Store new objects zlib-compressed.
    """

    def __init__(
        self, bucket: str, prefix: str = "", *, client: Any = None, compress: bool = False
    ) -> None:
        super().__init__(compress=compress)
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._base = f"{self.prefix}/" if self.prefix else ""
        self._s3 = client if client is not None else _client()
        #: Seconds after which re-using a blob refreshes its timestamp (keep it well under
        #: the retention grace period, default one hour).
        self.touch_after = 600.0

    def __repr__(self) -> str:
        return f"S3BlobStore('s3://{self.bucket}/{self.prefix}')"

    def _key(self, tenant: str, digest: str) -> str:
        return f"{self._base}{tenant}/{digest}"

    def _write(self, tenant: str, source: base.Readable, *, assume_new: bool) -> str:
        with tempfile.SpooledTemporaryFile(max_size=SINGLE_PUT_BYTES) as spool:
            digest = base.encode(source, spool, compress=self.compress)  # type: ignore[arg-type]
            if not assume_new and self._exists(tenant, digest):
                return digest
            size = spool.tell()
            spool.seek(0)
            key = self._key(tenant, digest)
            if size <= SINGLE_PUT_BYTES:
                self._s3.put_object(Bucket=self.bucket, Key=key, Body=spool)
            else:
                self._s3.upload_fileobj(spool, self.bucket, key)
        return digest

    def _open_raw(self, tenant: str, digest: str, *, head_only: bool = False) -> base.Readable:
        extra = {"Range": f"bytes=0-{base.HEADER.size - 1}"} if head_only else {}
        try:
            reply = self._s3.get_object(Bucket=self.bucket, Key=self._key(tenant, digest), **extra)
        except self._s3.exceptions.NoSuchKey:
            raise self._missing(tenant, digest) from None
        body: base.Readable = reply["Body"]
        return body

    def _exists(self, tenant: str, digest: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=self._key(tenant, digest))
        except self._s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def _modified(self, tenant: str, digest: str) -> float:
        try:
            reply = self._s3.head_object(Bucket=self.bucket, Key=self._key(tenant, digest))
        except self._s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise self._missing(tenant, digest) from None
            raise
        return float(reply["LastModified"].timestamp())

    def _touch(self, tenant: str, digest: str) -> None:
        # A re-used blob counts as new for garbage collection's grace period: copying an
        # object onto itself with replaced metadata refreshes its LastModified. Only blobs
        # older than ``touch_after`` are copied, so a hot value is not copied on every use.
        key = self._key(tenant, digest)
        reply = self._s3.head_object(Bucket=self.bucket, Key=key)
        if time.time() - reply["LastModified"].timestamp() < self.touch_after:
            return
        self._s3.copy_object(
            Bucket=self.bucket,
            Key=key,
            CopySource={"Bucket": self.bucket, "Key": key},
            MetadataDirective="REPLACE",
        )

    def _delete(self, tenant: str, digest: str) -> None:
        # S3 deletes are idempotent: a missing key is not an error.
        self._s3.delete_object(Bucket=self.bucket, Key=self._key(tenant, digest))

    def _list(self, tenant: str | None) -> Iterator[tuple[str, str]]:
        start = f"{self._base}{tenant}/" if tenant else self._base
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start)
        for page in pages:
            for item in page.get("Contents", []):
                owner, _, digest = item["Key"][len(self._base) :].partition("/")
                if base.TENANT_RE.fullmatch(owner) and base.DIGEST_RE.fullmatch(digest):
                    yield owner, digest
