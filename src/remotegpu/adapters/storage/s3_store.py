"""Objects in an S3-compatible store (MinIO, Ceph RGW, AWS S3, ...) through the ``minio`` client.

The client is synchronous (urllib3): every call runs in a worker thread. Bytes flow in
chunks: a download never holds more than one chunk, an upload never more than one part.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import AsyncIterator
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import urllib3
from minio import Minio
from minio.commonconfig import ComposeSource, CopySource
from minio.datatypes import Part
from minio.error import S3Error

from remotegpu.application.storage.ports import ObjectInfo, ObjectNotFound, PartInfo, Unsupported

_NOT_FOUND = {"NoSuchKey", "NoSuchUpload", "NoSuchObject", "NotFound"}
_UNSUPPORTED = {"MethodNotAllowed", "NotImplemented"}
log = logging.getLogger(__name__)
_MAX_SINGLE_COPY = 5 * 1024**3


@dataclass(frozen=True)
class S3Config:
    endpoint: str  # http(s)://host[:port]
    bucket: str
    access_key: str = ""
    secret_key: str = ""
    region: str | None = None
    addressing: str = "auto"  # "path", "virtual" or "auto" (virtual for AWS hosts, path otherwise)
    verify_tls: bool = True
    # Origins (the console's, e.g. "https://gpu.lab") allowed to PUT parts and GET files by
    # presigned URL from a browser: written as the bucket's CORS rules by ensure_ready.
    # Empty: the bucket's CORS is left as it is (set it yourself, see cors_xml).
    cors_origins: tuple[str, ...] = ()


def make_client(config: S3Config) -> Minio:
    url = urlsplit(config.endpoint if "://" in config.endpoint else "https://" + config.endpoint)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ValueError(f"S3 endpoint must be http(s)://host[:port], not {config.endpoint!r}")
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=10, read=300), maxsize=32, cert_reqs="CERT_REQUIRED" if config.verify_tls else "CERT_NONE",
        retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )
    client = Minio(url.netloc, access_key=config.access_key or None, secret_key=config.secret_key or None,
                   secure=url.scheme == "https", region=config.region or None, http_client=http)
    if config.addressing == "path":
        client.disable_virtual_style_endpoint()
    elif config.addressing == "virtual":
        client.enable_virtual_style_endpoint()
    return client


def _missing(exc: S3Error) -> bool:
    return exc.code in _NOT_FOUND


class S3ObjectStore:
    presigns = True

    def __init__(self, config: S3Config, client: Minio | None = None):
        self.config = config
        self.bucket = config.bucket
        self.client = client or make_client(config)

    async def ensure_ready(self) -> None:
        def ensure() -> None:
            if not self.client.bucket_exists(self.bucket):
                try:
                    self.client.make_bucket(self.bucket, location=self.config.region or None)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

        await asyncio.to_thread(ensure)
        if self.config.cors_origins:
            await asyncio.to_thread(self._put_cors)

    def _put_cors(self) -> None:
        """PutBucketCors (the minio client has no call for it: a signed request of its own)."""
        body = cors_xml(self.config.cors_origins).encode()
        md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        try:
            self.client._execute("PUT", self.bucket, body=body, headers={"Content-MD5": md5, "Content-Type": "application/xml"},
                                 query_params={"cors": ""})
        except S3Error as exc:
            if exc.code not in _UNSUPPORTED:
                raise
            log.warning("S3 server does not take bucket CORS rules (%s): browsers upload through the platform", exc.code)

    async def put(self, key: str, chunks: AsyncIterator[bytes], *, part_size: int = 16 * 1024 * 1024) -> int:
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[PartInfo] = []
        size = 0
        try:
            async for chunk in chunks:
                buffer += chunk
                size += len(chunk)
                while len(buffer) >= part_size:
                    if upload_id is None:
                        upload_id = await self.create_multipart(key)
                    with memoryview(buffer) as view:
                        data = bytes(view[:part_size])  # one copy, not two
                    del buffer[:part_size]
                    etag = await self.upload_part(key, upload_id, len(parts) + 1, data)
                    parts.append(PartInfo(len(parts) + 1, etag, len(data)))
            if upload_id is None:
                data = bytes(buffer)
                await asyncio.to_thread(self.client.put_object, self.bucket, key, io.BytesIO(data), len(data))
                return size
            if buffer or not parts:
                etag = await self.upload_part(key, upload_id, len(parts) + 1, bytes(buffer))
                parts.append(PartInfo(len(parts) + 1, etag, len(buffer)))
            await self.complete_multipart(key, upload_id, parts)
            upload_id = None
            return size
        finally:
            if upload_id is not None:
                await self.abort_multipart(key, upload_id)

    async def get(self, key: str, *, offset: int = 0, length: int | None = None,
                  chunk_size: int = 1024 * 1024) -> AsyncIterator[bytes]:
        if length == 0:
            if await self.stat(key) is None:
                raise ObjectNotFound(key)
            return _empty()
        try:
            response = await asyncio.to_thread(self.client.get_object, self.bucket, key, offset, length or 0)
        except S3Error as exc:
            if _missing(exc):
                raise ObjectNotFound(key) from None
            raise
        return _stream(response, chunk_size)

    async def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = await asyncio.to_thread(self.client.stat_object, self.bucket, key)
        except S3Error as exc:
            if _missing(exc):
                return None
            raise
        return ObjectInfo(key, st.size or 0, st.last_modified)

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        def listing() -> list[ObjectInfo]:
            return [ObjectInfo(o.object_name, o.size or 0, o.last_modified)
                    for o in self.client.list_objects(self.bucket, prefix=prefix or None, recursive=True)]

        return sorted(await asyncio.to_thread(listing), key=lambda o: o.key)

    async def delete(self, key: str) -> None:
        try:
            await asyncio.to_thread(self.client.remove_object, self.bucket, key)
        except S3Error as exc:
            if not _missing(exc):
                raise

    async def copy(self, source: str, target: str) -> None:
        info = await self.stat(source)
        if info is None:
            raise ObjectNotFound(source)
        if info.size <= _MAX_SINGLE_COPY:
            await asyncio.to_thread(self.client.copy_object, self.bucket, target, CopySource(self.bucket, source))
        else:  # UploadPartCopy in ≤ 5 GiB ranges
            await asyncio.to_thread(self.client.compose_object, self.bucket, target, [ComposeSource(self.bucket, source)])

    # --- multipart ----------------------------------------------------------------------

    async def create_multipart(self, key: str) -> str:
        return await asyncio.to_thread(self.client._create_multipart_upload, self.bucket, key, {})

    async def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        try:
            return await asyncio.to_thread(self.client._upload_part, self.bucket, key, data, None, upload_id, number)
        except S3Error as exc:
            if _missing(exc):
                raise ObjectNotFound(f"upload {upload_id}") from None
            raise

    async def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        def listing() -> list[PartInfo]:
            parts: list[PartInfo] = []
            marker = None
            while True:
                result = self.client._list_parts(self.bucket, key, upload_id, max_parts=1000, part_number_marker=marker)
                parts += [PartInfo(p.part_number, p.etag, p.size or 0) for p in result.parts]
                if not result.is_truncated:
                    return parts
                marker = str(result.next_part_number_marker)

        try:
            return sorted(await asyncio.to_thread(listing), key=lambda p: p.number)
        except S3Error as exc:
            if _missing(exc):
                raise ObjectNotFound(f"upload {upload_id}") from None
            if exc.code in _UNSUPPORTED:
                raise Unsupported(f"this S3 server does not list parts ({exc.code})") from None
            raise

    async def complete_multipart(self, key: str, upload_id: str, parts: list[PartInfo]) -> None:
        ordered = [Part(p.number, p.etag) for p in sorted(parts, key=lambda p: p.number)]
        try:
            await asyncio.to_thread(self.client._complete_multipart_upload, self.bucket, key, upload_id, ordered)
        except S3Error as exc:
            if _missing(exc):
                raise ObjectNotFound(f"upload {upload_id}") from None
            raise

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            await asyncio.to_thread(self.client._abort_multipart_upload, self.bucket, key, upload_id)
        except S3Error as exc:
            if exc.code in _UNSUPPORTED:  # e.g. s3rver: its parts stay until the server's own cleanup
                log.warning("S3 server does not abort multipart uploads (%s): %s left", exc.code, upload_id)
            elif not _missing(exc):
                raise

    # --- presigned URLs -----------------------------------------------------------------

    async def presign_get(self, key: str, expires: timedelta, *, filename: str | None = None) -> str | None:
        headers = {"response-content-disposition": f'attachment; filename="{filename}"'} if filename else None
        return await asyncio.to_thread(self.client.presigned_get_object, self.bucket, key, expires, headers)

    async def presign_part(self, key: str, upload_id: str, number: int, expires: timedelta) -> str | None:
        return await asyncio.to_thread(self.client.get_presigned_url, "PUT", self.bucket, key, expires,
                                       None, None, None, {"partNumber": str(number), "uploadId": upload_id})

    async def presign_put(self, key: str, expires: timedelta) -> str | None:
        return await asyncio.to_thread(self.client.presigned_put_object, self.bucket, key, expires)


def cors_xml(origins: tuple[str, ...] | list[str]) -> str:
    """The bucket CORS rules browsers need for presigned uploads and downloads: PUT parts
    and GET files from these origins, and read the ETag of each part (CompleteMultipartUpload
    needs it). For a bucket you manage yourself: ``aws s3api put-bucket-cors`` /
    ``mc cors set`` with the same rules."""
    allowed = "".join(f"<AllowedOrigin>{escape(o)}</AllowedOrigin>" for o in origins)
    return ('<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><CORSRule>'
            f"{allowed}<AllowedMethod>PUT</AllowedMethod><AllowedMethod>GET</AllowedMethod><AllowedMethod>HEAD</AllowedMethod>"
            "<AllowedHeader>*</AllowedHeader><ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>3600</MaxAgeSeconds>"
            "</CORSRule></CORSConfiguration>")


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover


async def _stream(response, chunk_size: int) -> AsyncIterator[bytes]:
    chunks = response.stream(chunk_size)
    try:
        while True:
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                return
            yield chunk
    finally:
        response.close()
        response.release_conn()
