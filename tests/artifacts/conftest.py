"""Fixtures for the artifact-store tests: sandboxes per backend and a real S3 (moto) on loopback."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

S3_BUCKET = "loopml-artifacts-test"
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BAIT = b"bait: must never be read, changed or deleted through a store"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str
    client: Any  # boto3 S3 client
    session: Any  # one aiobotocore session: its service-model cache makes a new store ~0.1 s faster

    @property
    def storage_options(self) -> dict[str, Any]:
        """Options for a *fresh* s3fs instance (the store skips s3fs's instance cache)."""
        return {
            "key": "testing",
            "secret": "testing",
            "session": self.session,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": "us-east-1"},
        }

    def keys(self, prefix: str = "") -> dict[str, str]:
        """Every key below ``prefix`` with its ETag."""
        out: dict[str, str] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            out.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
        return out

    def delete_prefix(self, prefix: str) -> None:
        keys = [{"Key": key} for key in self.keys(prefix)]
        for start in range(0, len(keys), 1000):
            self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": keys[start : start + 1000], "Quiet": True}
            )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A moto S3 server on 127.0.0.1 (free port) with one bucket, and dummy AWS credentials."""
    moto_server = pytest.importorskip(
        "moto.server", reason="S3 tests need moto[server]: pip install 'loopml[dev]'"
    )
    boto3 = pytest.importorskip("boto3", reason="S3 tests need moto[server] (brings boto3)")
    pytest.importorskip("s3fs", reason="S3 tests need s3fs: pip install 'loopml[s3]'")
    aiobotocore_session = pytest.importorskip(
        "aiobotocore.session", reason="s3fs needs aiobotocore"
    )
    no_aws_files = tmp_path_factory.mktemp("no-aws-config")
    with pytest.MonkeyPatch.context() as env:
        for name, value in DUMMY_CREDENTIALS.items():
            env.setenv(name, value)
        # never pick up a developer's real ~/.aws profile or credentials
        env.setenv("AWS_CONFIG_FILE", str(no_aws_files / "config"))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(no_aws_files / "credentials"))
        env.delenv("AWS_PROFILE", raising=False)
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            client.create_bucket(Bucket=S3_BUCKET)
            yield S3Server(
                endpoint_url=endpoint,
                bucket=S3_BUCKET,
                client=client,
                session=aiobotocore_session.AioSession(),
            )
        finally:
            server.stop()


@pytest.fixture
def s3_sandbox(s3_server: S3Server) -> Iterator[str]:
    """A unique key prefix with bait objects; everything below it is deleted afterwards."""
    prefix = f"t-{uuid.uuid4().hex}"
    for key in (f"{prefix}/x", f"{prefix}/a/x", f"{prefix}/a/rootx"):
        s3_server.client.put_object(Bucket=s3_server.bucket, Key=key, Body=BAIT)
    yield prefix
    s3_server.delete_prefix(f"{prefix}/")


@pytest.fixture
def local_sandbox(tmp_path: Path) -> Path:
    """``tmp_path/sandbox`` with bait files; stores live at ``sandbox/a/root``."""
    sandbox = tmp_path / "sandbox"
    (sandbox / "a").mkdir(parents=True)
    for bait in ("x", "a/x", "a/rootx", "secret.txt"):
        (sandbox / bait).write_bytes(BAIT)
    return sandbox


def local_escape_snapshot(sandbox: Path, root: Path) -> Callable[[], dict[str, str]]:
    """Digest of every file and folder in ``sandbox`` outside ``root`` (symlinks not followed)."""

    def snapshot() -> dict[str, str]:
        out: dict[str, str] = {}
        for dirpath, dirnames, filenames in os.walk(sandbox):
            here = Path(dirpath)
            if here == root or root in here.parents:
                continue
            for name in dirnames:
                if here / name != root:
                    out[str((here / name).relative_to(sandbox))] = "dir"
            for name in filenames:
                path = here / name
                data = os.readlink(path) if path.is_symlink() else path.read_bytes()
                out[str(path.relative_to(sandbox))] = hashlib.sha256(
                    data.encode() if isinstance(data, str) else data
                ).hexdigest()
        return out

    return snapshot
