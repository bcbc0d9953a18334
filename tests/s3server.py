"""A real S3-compatible server for tests and benchmarks: moto's server mode (moto[s3] plus flask, not the
heavy moto[server] extra) in its own process on 127.0.0.1, with authentication on. The first four
requests (the set-up below) need no credentials; every later one must be signed with the IAM user's key."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class S3Server:
    endpoint: str
    bucket: str
    key: str
    secret: str
    client: Any  # a boto3 S3 client with the user's credentials

    @property
    def env(self) -> dict[str, str]:
        """The server and credentials the way the AWS SDK (and so s3fs) reads them from the environment."""
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def s3_server(bucket: str = "research") -> Iterator[S3Server]:
    """Start the server, create an IAM user with full access and one bucket; stop the server afterwards."""
    import boto3

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "4"}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.time() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.time() > deadline or proc.poll() is not None:
                        log.seek(0)
                        raise RuntimeError(f"moto server did not start: {log.read()[-2000:]!r}") from None
                    time.sleep(0.2)
            boot = {
                "endpoint_url": endpoint,
                "region_name": "us-east-1",
                "aws_access_key_id": "bootstrap",
                "aws_secret_access_key": "bootstrap",
            }
            iam = boto3.client("iam", **boot)
            iam.create_user(UserName="researcher")
            iam.put_user_policy(
                UserName="researcher",
                PolicyName="all",
                PolicyDocument=json.dumps(
                    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
                ),
            )
            key = iam.create_access_key(UserName="researcher")["AccessKey"]
            client = boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id=key["AccessKeyId"],
                aws_secret_access_key=key["SecretAccessKey"],
            )
            client.create_bucket(Bucket=bucket)
            yield S3Server(endpoint, bucket, key["AccessKeyId"], key["SecretAccessKey"], client)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@contextlib.contextmanager
def counting_s3_reads() -> Iterator[list[int]]:
    """Inside the block, the length of every object read s3fs makes (a ranged GET each) lands in the list."""
    import s3fs

    fetched: list[int] = []
    original = s3fs.S3FileSystem._cat_file

    async def counting(self: Any, path: str, *args: Any, **kwargs: Any) -> bytes:
        data = await original(self, path, *args, **kwargs)
        fetched.append(len(data))
        return data

    s3fs.S3FileSystem._cat_file = counting
    s3fs.S3FileSystem.clear_instance_cache()  # s3fs binds its sync methods when an instance is made
    try:
        yield fetched
    finally:
        s3fs.S3FileSystem._cat_file = original
        s3fs.S3FileSystem.clear_instance_cache()
