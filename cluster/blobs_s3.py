"""The S3-compatible backend of the blob store (AWS S3, MinIO, Ceph, ...): multi-node deployments."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

import pyarrow.fs

from cluster.blob_signing import BlobError, BlobNotFound, content_disposition, validate_key
from cluster.blob_store import BlobStore, PresignedPost, check_limits, validate_prefix

logger = logging.getLogger(__name__)

S3_CONNECT_TIMEOUT_S = 5.0
S3_READ_TIMEOUT_S = 60.0
S3_MAX_ATTEMPTS = 3
S3_DELETE_BATCH = 1000  # DeleteObjects accepts at most 1000 keys per call


class S3BlobStore(BlobStore):
    """Objects in one S3 bucket (AWS, MinIO, any S3-compatible endpoint); creates the bucket.

    Presigned URLs point at the object store, so ``endpoint_url`` must be reachable by the
    clients that upload and download. S3 enforces the POST policy's content-length-range;
    some S3-compatible servers (moto, for one) do not, so callers confirming an upload check
    ``size(key)`` against the declared size rather than trusting the policy alone.
    """

    def __init__(
        self, *, bucket: str, endpoint_url: str | None, region: str,
        access_key_id: str | None, secret_access_key: str | None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self._bucket, self._endpoint_url, self._region = bucket, endpoint_url, region
        self._access_key_id, self._secret_access_key = access_key_id, secret_access_key
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            connect_timeout=S3_CONNECT_TIMEOUT_S,
            read_timeout=S3_READ_TIMEOUT_S,
            retries={"max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"},
        )
        self._client = boto3.session.Session().client(  # own session: boto3's default is not thread-safe
            "s3", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key, config=config,
        )
        self.ensure_bucket()

    def __repr__(self) -> str:
        return f"S3BlobStore(bucket={self._bucket!r}, endpoint_url={self._endpoint_url!r})"

    @contextmanager
    def _errors(self, action: str, key: str | None = None) -> Iterator[None]:
        """Map botocore failures to BlobNotFound / BlobError naming the bucket and key."""
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"s3://{self._bucket}/{key}" if key is not None else f"bucket {self._bucket!r}"
        try:
            yield
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound") or (code == "NoSuchBucket" and key is None):
                missing = f"no blob stored at {where}" if key is not None else f"{where} does not exist"
                raise BlobNotFound(missing) from e
            raise BlobError(f"S3 {action} failed for {where}: {code or e}") from e
        except BotoCoreError as e:
            raise BlobError(f"S3 {action} failed for {where}: {e}") from e

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists; raises BlobError when S3 is unreachable or denies."""
        from botocore.exceptions import ClientError

        try:
            with self._errors("head_bucket"):
                self._client.head_bucket(Bucket=self._bucket)
            return
        except BlobNotFound:
            pass
        extra = {} if self._region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": self._region}
        }
        with self._errors("create_bucket"):
            try:
                self._client.create_bucket(Bucket=self._bucket, **extra)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":  # lost a race: fine
                    raise
        logger.info("created S3 bucket %s", self._bucket)

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._errors("put_object", key):
            self._client.put_object(Bucket=self._bucket, Key=validate_key(key), Body=data)

    def get_bytes(self, key: str) -> bytes:
        with self._errors("get_object", key):
            return self._client.get_object(Bucket=self._bucket, Key=validate_key(key))["Body"].read()

    def size(self, key: str) -> int | None:
        try:
            with self._errors("head_object", key):
                return self._client.head_object(Bucket=self._bucket, Key=validate_key(key))["ContentLength"]
        except BlobNotFound:
            return None

    def delete(self, key: str) -> None:
        with self._errors("delete_object", key):
            self._client.delete_object(Bucket=self._bucket, Key=validate_key(key))

    def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        removed = 0
        with self._errors("delete_prefix", prefix):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=prefix, PaginationConfig={"PageSize": S3_DELETE_BATCH}
            )
            for page in pages:
                objects = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
                if not objects:
                    continue
                result = self._client.delete_objects(
                    Bucket=self._bucket, Delete={"Objects": objects, "Quiet": True}
                )
                if result.get("Errors"):
                    first = result["Errors"][0]
                    raise BlobError(
                        f"S3 refused to delete {len(result['Errors'])} object(s) under {prefix!r}, "
                        f"first {first.get('Key')!r}: {first.get('Code')}"
                    )
                removed += len(objects)
        return removed

    def presigned_post(
        self, key: str, *, max_bytes: int, expires_s: int, content_type: str | None = None
    ) -> PresignedPost:
        check_limits(max_bytes, expires_s)
        fields: dict[str, str] = {}
        conditions: list[object] = [["content-length-range", 0, max_bytes]]
        if content_type is not None:
            fields["Content-Type"] = content_type
            conditions.append({"Content-Type": content_type})
        with self._errors("generate_presigned_post", key):
            post = self._client.generate_presigned_post(  # adds the {"key": key} condition itself
                Bucket=self._bucket, Key=validate_key(key), Fields=fields,
                Conditions=conditions, ExpiresIn=expires_s,
            )
        return PresignedPost(url=post["url"], fields=dict(post["fields"]))

    def presigned_get(self, key: str, *, expires_s: int, filename: str | None = None) -> str:
        check_limits(0, expires_s)
        params = {"Bucket": self._bucket, "Key": validate_key(key)}
        if filename is not None:
            params["ResponseContentDisposition"] = content_disposition(filename)
        with self._errors("generate_presigned_url", key):
            return self._client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s)

    def arrow_filesystem(self) -> pyarrow.fs.FileSystem:
        options: dict[str, object] = {"region": self._region}
        if self._access_key_id and self._secret_access_key:
            options.update(access_key=self._access_key_id, secret_key=self._secret_access_key)
        if self._endpoint_url:
            url = urlparse(self._endpoint_url)
            options.update(endpoint_override=url.netloc, scheme=url.scheme or "https")
        return pyarrow.fs.S3FileSystem(**options)

    def arrow_path(self, key: str) -> str:
        return f"{self._bucket}/{validate_key(key)}"

    def ping(self) -> None:
        with self._errors("head_bucket"):
            self._client.head_bucket(Bucket=self._bucket)
