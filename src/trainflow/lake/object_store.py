"""Plain files (reports, plots) beside the Delta tables, under the same lake root.

Delta tables go through deltalake; files that are not tables (an HTML report, a PNG) go
through this: the local filesystem for a folder root, boto3 for `s3://`. boto3 reads the
same AWS_* variables as deltalake, so one set of credentials serves both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ObjectStore:
    root: str
    storage_options: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    def uri(self, key: str) -> str:
        return f"{self.root.rstrip('/')}/{key.lstrip('/')}"

    def _s3(self) -> tuple[Any, str, str]:
        import boto3

        bucket, _, prefix = self.root.removeprefix("s3://").partition("/")
        opts = self.storage_options
        client = boto3.client(
            "s3",
            endpoint_url=opts.get("AWS_ENDPOINT_URL"),
            region_name=opts.get("AWS_REGION") or opts.get("AWS_DEFAULT_REGION"),
            aws_access_key_id=opts.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=opts.get("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=opts.get("AWS_SESSION_TOKEN"),
        )
        return client, bucket, prefix.strip("/")

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Write one object whole (S3 PUT and a local rename are both all-or-nothing)."""
        if self.is_s3:
            client, bucket, prefix = self._s3()
            object_key = f"{prefix}/{key}" if prefix else key
            client.put_object(Bucket=bucket, Key=object_key, Body=data, ContentType=content_type)
        else:
            path = Path(self.uri(key))
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            partial.write_bytes(data)
            partial.replace(path)
        return self.uri(key)

    def get(self, key: str) -> bytes:
        if self.is_s3:
            client, bucket, prefix = self._s3()
            object_key = f"{prefix}/{key}" if prefix else key
            body: bytes = client.get_object(Bucket=bucket, Key=object_key)["Body"].read()
            return body
        return Path(self.uri(key)).read_bytes()

    def exists(self, key: str) -> bool:
        if self.is_s3:
            client, bucket, prefix = self._s3()
            object_key = f"{prefix}/{key}" if prefix else key
            listed = client.list_objects_v2(Bucket=bucket, Prefix=object_key, MaxKeys=1)
            return any(o["Key"] == object_key for o in listed.get("Contents", []))
        return Path(self.uri(key)).exists()
