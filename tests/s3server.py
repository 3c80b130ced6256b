"""S3 for tests: moto's server mode on a free local port, one bucket per test.

Import the fixtures where they are needed::

    from tests.s3server import s3_bucket, s3_endpoint  # noqa: F401
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """Run moto's S3 server on a free local port; yield its endpoint URL; stop it."""
    from moto.server import ThreadedMotoServer

    # Port 0 lets the OS pick a free port, with no window for another process to take it.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Run moto's S3 server for the session and yield its endpoint URL."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("moto[server] is not installed")
    with moto_server() as endpoint:
        yield endpoint


def s3_client(endpoint: str) -> Any:
    """Return a boto3 S3 client for the moto server, with fake credentials."""
    import boto3

    return boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).client("s3", endpoint_url=endpoint)


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Create a bucket of a unique name and yield it; AWS_* point at moto for the test."""
    # Fake credentials, and no profile or config file of the developer's, for this test only.
    for name, value in {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    client = s3_client(s3_endpoint)
    bucket = f"spane-test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    yield bucket
    # Empty and drop the bucket so large test objects do not pile up in the server's memory.
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
    client.delete_bucket(Bucket=bucket)
