"""Plain files (reports, plots) beside the Delta tables, under the same lake root.

Delta tables go through deltalake; files that are not tables (an HTML report, a PNG, a
run manifest) go through this: the local filesystem for a folder root, an S3 client for
`s3://`. The client comes from whoever builds the store (dagster-aws's `S3Resource.get_client`
in `LakeResource.object_store`), so this module stays free of Dagster and of client config;
boto3 reads the same AWS_* credentials (or the pod's role) as deltalake, so one set serves
both and none is ever passed in here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ObjectStore:
    root: str
    # Makes the boto3 S3 client, once per store (needed only for an `s3://` root).
    s3_client_factory: Callable[[], Any] | None = None

    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    def uri(self, key: str) -> str:
        return f"{self.root.rstrip('/')}/{key.lstrip('/')}"

    @functools.cached_property
    def _client(self) -> Any:
        if self.s3_client_factory is None:
            raise ValueError(f"object store {self.root}: no S3 client was given for an s3:// root")
        return self.s3_client_factory()

    def _s3(self) -> tuple[Any, str, str]:
        bucket, _, prefix = self.root.removeprefix("s3://").partition("/")
        return self._client, bucket, prefix.strip("/")

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
