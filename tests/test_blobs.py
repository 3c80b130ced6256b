"""Blob stores: the local twin and S3 (through moto's server) pass the same tests."""

from __future__ import annotations

import hashlib
import io
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from spane import errors
from spane.blobs import (
    BlobStore,
    CachingBlobStore,
    LocalBlobStore,
    S3BlobStore,
    is_ref,
    make_ref,
    open_blob_store,
    parse_ref,
)
from tests.s3server import s3_bucket, s3_client, s3_endpoint  # noqa: F401

MakeStore = Callable[..., BlobStore]
DIGEST = "ab" * 32


@pytest.fixture(params=["local", "s3"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    """Build stores of one kind that share one location (folder or bucket prefix)."""
    if request.param == "local":
        return lambda compress=False: LocalBlobStore(tmp_path / "blobs", compress=compress)
    bucket = request.getfixturevalue("s3_bucket")
    client = s3_client(request.getfixturevalue("s3_endpoint"))
    return lambda compress=False: S3BlobStore(bucket, "pfx", client=client, compress=compress)


@pytest.fixture(params=[False, True], ids=["raw", "zlib"])
def store(request: pytest.FixtureRequest, make_store: MakeStore) -> BlobStore:
    return make_store(compress=request.param)


def stored_objects(store: BlobStore) -> list[str]:
    """Every object the backend holds, staged or not, bypassing the store's filters."""
    if isinstance(store, LocalBlobStore):
        return sorted(str(p) for p in store.root.rglob("*") if p.is_file())
    assert isinstance(store, S3BlobStore)
    reply = store._s3.list_objects_v2(Bucket=store.bucket)
    return sorted(item["Key"] for item in reply.get("Contents", []))


def tamper(store: BlobStore, ref: str, edit: Callable[[bytes], bytes]) -> None:
    """Rewrite the stored object behind ``ref`` as ``edit`` makes it."""
    tenant, digest = parse_ref(ref)
    if isinstance(store, LocalBlobStore):
        path = store.root / tenant / digest[:2] / digest
        path.write_bytes(edit(path.read_bytes()))
        return
    assert isinstance(store, S3BlobStore)
    key = f"pfx/{tenant}/{digest}"
    body = store._s3.get_object(Bucket=store.bucket, Key=key)["Body"].read()
    store._s3.put_object(Bucket=store.bucket, Key=key, Body=edit(body))


def flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


class Chunks(io.RawIOBase):
    """A large pseudo-random stream that is never whole in memory."""

    def __init__(self, total: int, seed: int = 0) -> None:
        self.left, self.rng = total, random.Random(seed)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        n = self.left if size < 0 else min(size, self.left)
        self.left -= n
        return self.rng.randbytes(n)


@pytest.mark.parametrize("data", [b"hello world", b"", b"\x00" * 100_000])
def test_round_trip(store: BlobStore, data: bytes) -> None:
    ref = store.put("acme", data)
    assert ref == f"spane-blob:v1:acme:{hashlib.sha256(data).hexdigest()}"
    assert is_ref(ref) and len(ref) < 200
    assert store.get(ref, tenant="acme") == data
    assert store.exists(ref)
    assert store.size(ref) == len(data)


def test_put_is_idempotent_and_stores_once(store: BlobStore) -> None:
    first = store.put("acme", b"same bytes")
    assert store.put("acme", b"same bytes") == first
    assert store.put_stream("acme", io.BytesIO(b"same bytes")) == first
    assert len(stored_objects(store)) == 1
    assert list(store.iter_refs()) == [first]


def test_s3_put_skips_upload_of_stored_value(s3_bucket: str, s3_endpoint: str) -> None:  # noqa: F811
    client = s3_client(s3_endpoint)
    uploads: list[str] = []
    client.meta.events.register("before-call.s3.PutObject", lambda **kw: uploads.append("put"))
    store = S3BlobStore(s3_bucket, client=client)
    store.put("acme", b"once")
    store.put("acme", b"once")
    store.put_stream("acme", io.BytesIO(b"once"))
    assert uploads == ["put"]
    assert list(store.iter_refs()) == [make_ref("acme", hashlib.sha256(b"once").hexdigest())]


def test_s3_without_boto3_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # makes ``import boto3`` fail
    with pytest.raises(errors.ConfigurationError, match="pip install boto3"):
        S3BlobStore("bucket")


def test_same_bytes_of_two_tenants_are_kept_apart(store: BlobStore) -> None:
    mine, theirs = store.put("a", b"shared"), store.put("b", b"shared")
    assert mine != theirs
    store.delete(theirs)
    assert store.get(mine, tenant="a") == b"shared"


def test_reading_with_another_tenant_fails(store: BlobStore) -> None:
    ref = store.put("a", b"secret")
    with pytest.raises(errors.BlobError, match="another tenant"):
        store.get(ref, tenant="b")
    # A forged reference names a blob the other tenant never stored.
    forged = make_ref("b", parse_ref(ref)[1])
    with pytest.raises(errors.BlobError, match="missing"):
        store.get(forged, tenant="b")


@pytest.mark.parametrize(
    "edit",
    [flip_last_byte, lambda data: data[:-3], lambda data: data + b"x", lambda data: b"junk"],
    ids=["flipped", "truncated", "extended", "replaced"],
)
def test_corruption_is_detected(store: BlobStore, edit: Callable[[bytes], bytes]) -> None:
    ref = store.put("acme", b"payload " * 1000)
    tamper(store, ref, edit)
    with pytest.raises(errors.BlobError, match="corrupted"):
        store.get(ref, tenant="acme")


def test_stream_hands_out_bytes_then_fails_at_the_end_if_corrupted(store: BlobStore) -> None:
    ref = store.put_stream("acme", Chunks(3 << 20))  # several read chunks, even compressed
    tamper(store, ref, flip_last_byte)
    with store.open(ref, tenant="acme") as stream:
        stream.read(10)
        with pytest.raises(errors.BlobError, match="corrupted"):
            stream.read()


def test_missing_blob(store: BlobStore) -> None:
    ref = make_ref("acme", DIGEST)
    assert not store.exists(ref)
    for read in (lambda: store.get(ref, tenant="acme"), lambda: store.size(ref)):
        with pytest.raises(errors.BlobError, match="missing"):
            read()


def test_delete_is_idempotent(store: BlobStore) -> None:
    ref = store.put("acme", b"bye")
    store.delete(ref)
    store.delete(ref)
    store.delete(make_ref("nobody", DIGEST))
    assert not store.exists(ref)
    assert stored_objects(store) == []


def test_iter_refs(store: BlobStore) -> None:
    refs = {store.put(tenant, data) for tenant in ("a", "b") for data in (b"1", b"2")}
    assert set(store.iter_refs()) == refs
    assert set(store.iter_refs("a")) == {ref for ref in refs if parse_ref(ref)[0] == "a"}
    assert list(store.iter_refs("nobody")) == []


def test_compression_setting_does_not_matter_to_readers(make_store: MakeStore) -> None:
    packed, plain = make_store(compress=True), make_store(compress=False)
    data = b"compressible " * 10_000
    ref = packed.put("acme", data)
    assert plain.get(ref, tenant="acme") == data
    assert plain.put("acme", data) == ref  # the same value, so nothing new is stored
    other = plain.put("acme", data + b"!")
    assert packed.get(other, tenant="acme") == data + b"!"
    assert packed.size(ref) == len(data)


def test_compression_shrinks_what_is_stored(tmp_path: Path) -> None:
    data = b"compressible " * 10_000
    for compress in (False, True):
        store = LocalBlobStore(tmp_path / str(compress), compress=compress)
        ref = store.put("acme", data)
        stored = store.root / "acme" / parse_ref(ref)[1][:2] / parse_ref(ref)[1]
        assert (stored.stat().st_size < len(data) / 10) is compress


def test_streaming_a_large_value(make_store: MakeStore) -> None:
    store, total = make_store(), 20 << 20
    expected = hashlib.sha256(Chunks(total).read()).hexdigest()
    parts: list[str] = []
    if isinstance(store, S3BlobStore):
        store._s3.meta.events.register("before-call.s3.UploadPart", lambda **kw: parts.append(""))
    ref = store.put_stream("acme", Chunks(total))
    assert len(parts) == (3 if isinstance(store, S3BlobStore) else 0)  # multipart, 8 MiB parts
    assert parse_ref(ref) == ("acme", expected)
    assert store.size(ref) == total
    hasher, seen = hashlib.sha256(), 0
    with store.open(ref, tenant="acme") as stream:
        while chunk := stream.read(1 << 20):
            hasher.update(chunk)
            seen += len(chunk)
    assert (seen, hasher.hexdigest()) == (total, expected)


def test_failed_write_leaves_nothing_behind(make_store: MakeStore) -> None:
    class Broken(Chunks):
        def read(self, size: int = -1, /) -> bytes:
            if self.left < 5 << 20:
                raise OSError("connection reset")
            return super().read(size)

    store = make_store()
    with pytest.raises(OSError, match="connection reset"):
        store.put_stream("acme", Broken(10 << 20))
    assert stored_objects(store) == []


class CountingStore(LocalBlobStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gets = 0

    def get(self, ref: str, *, tenant: str) -> bytes:
        self.gets += 1
        return super().get(ref, tenant=tenant)


def test_cache_serves_repeated_gets_from_memory(tmp_path: Path) -> None:
    inner = CountingStore(tmp_path)
    cache = CachingBlobStore(inner, max_bytes=250)
    ref = cache.put("acme", b"a" * 100)
    assert cache.get(ref, tenant="acme") == cache.get(ref, tenant="acme") == b"a" * 100
    assert inner.gets == 1
    with pytest.raises(errors.BlobError, match="another tenant"):
        cache.get(ref, tenant="other")
    # Two more values overflow 250 bytes: the least recently used one goes.
    second, third = cache.put("acme", b"b" * 100), cache.put("acme", b"c" * 100)
    cache.get(second, tenant="acme")
    cache.get(third, tenant="acme")
    cache.get(ref, tenant="acme")
    assert inner.gets == 4
    cache.delete(ref)
    assert not inner.exists(ref)
    with pytest.raises(errors.BlobError, match="missing"):
        cache.get(ref, tenant="acme")


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"spane-blob:v1:acme:" + DIGEST.encode(),
        "spane-blob:v1:acme:" + DIGEST.upper(),
        "spane-blob:v1:..:" + DIGEST,
        "spane-blob:v1:" + "t" * 65 + ":" + DIGEST,
        "spane-blob:v2:acme:" + DIGEST,
        "spane-blob:v1:acme:" + DIGEST + ":",
    ],
)
def test_is_ref_rejects_lookalikes(value: Any) -> None:
    assert not is_ref(value)
    if isinstance(value, str):
        with pytest.raises(errors.BlobError, match=r"reference|tenant"):
            parse_ref(value)


def test_make_ref_checks_its_parts() -> None:
    assert parse_ref(make_ref("t-1_.x", DIGEST)) == ("t-1_.x", DIGEST)
    for tenant, digest in (("a/b", DIGEST), ("", DIGEST), (".", DIGEST), ("acme", "abc")):
        with pytest.raises(errors.BlobError):
            make_ref(tenant, digest)


def test_open_local_blob_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cases = {
        f"file://{tmp_path}/a": (tmp_path / "a", False),
        f"file://localhost{tmp_path}/a%20b?compress=1": (tmp_path / "a b", True),
        f"{tmp_path}/c?compress=true": (tmp_path / "c", True),
        "relative/dir": (Path("relative/dir"), False),
    }
    for url, (root, compress) in cases.items():
        store = open_blob_store(url)
        assert isinstance(store, LocalBlobStore)
        assert (store.root, store.compress) == (root, compress)


def test_open_s3_blob_store(s3_bucket: str) -> None:  # noqa: F811
    store = open_blob_store(f"s3://{s3_bucket}/some/prefix/?compress=1")
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix, store.compress) == (s3_bucket, "some/prefix", True)
    # Credentials and endpoint come from the AWS_* variables the fixture set.
    ref = store.put("acme", b"via env")
    assert store.get(ref, tenant="acme") == b"via env"


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/blobs",
        "s3://",
        "s3:///prefix",
        "file://otherhost/path",
        "file:relative",
        "",
        "/tmp/x?compress=maybe",
        "/tmp/x?compres=1",
    ],
)
def test_open_blob_store_refuses_other_urls(url: str) -> None:
    with pytest.raises(errors.ConfigurationError, match="blob store URL"):
        open_blob_store(url)
