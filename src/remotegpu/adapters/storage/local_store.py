"""The embedded object store: files under a directory (by default <data dir>/objects).

Writes land in a temporary file and are renamed into place, so a reader never sees half
an object and a crash leaves at most a temporary file. No presigned URLs: the platform
carries the bytes itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator

from remotegpu.application.storage.ports import ObjectInfo, ObjectNotFound, PartInfo

_TMP = ".tmp"


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in key:
        raise ValueError(f"invalid object key {key!r}")
    return key


class LocalObjectStore:
    presigns = False

    def __init__(self, root: Path):
        self.root = Path(root)
        self._objects = self.root / "objects"
        self._multipart = self.root / "multipart"

    def _path(self, key: str) -> Path:
        return self._objects / _check_key(key)

    async def ensure_ready(self) -> None:
        for d in (self._objects, self._multipart, self.root / _TMP):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _tmp(self) -> Path:
        (self.root / _TMP).mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.root / _TMP / uuid.uuid4().hex

    async def _write(self, target: Path, chunks: AsyncIterator[bytes]) -> int:
        tmp = self._tmp()
        size = 0
        f = await asyncio.to_thread(open, tmp, "wb")
        try:
            async for chunk in chunks:
                await asyncio.to_thread(f.write, chunk)
                size += len(chunk)
            await asyncio.to_thread(f.close)
            await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
            await asyncio.to_thread(os.replace, tmp, target)
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
        return size

    async def put(self, key: str, chunks: AsyncIterator[bytes], *, part_size: int = 16 * 1024 * 1024) -> int:
        return await self._write(self._path(key), chunks)

    async def get(self, key: str, *, offset: int = 0, length: int | None = None,
                  chunk_size: int = 1024 * 1024) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            f = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        return self._read(f, offset, length, chunk_size)

    @staticmethod
    async def _read(f, offset: int, length: int | None, chunk_size: int) -> AsyncIterator[bytes]:
        try:
            await asyncio.to_thread(f.seek, offset)
            left = length
            while left is None or left > 0:
                chunk = await asyncio.to_thread(f.read, chunk_size if left is None else min(chunk_size, left))
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            f.close()

    async def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = await asyncio.to_thread(os.stat, self._path(key))
        except FileNotFoundError:
            return None
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, timezone.utc))

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        def walk() -> list[ObjectInfo]:
            found = []
            for dirpath, _dirs, files in os.walk(self._objects):
                for name in files:
                    full = Path(dirpath) / name
                    key = full.relative_to(self._objects).as_posix()
                    if key.startswith(prefix):
                        st = full.stat()
                        found.append(ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, timezone.utc)))
            return sorted(found, key=lambda o: o.key)

        return await asyncio.to_thread(walk)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def copy(self, source: str, target: str) -> None:
        src, dst = self._path(source), self._path(target)
        if not src.exists():
            raise ObjectNotFound(source)
        tmp = self._tmp()

        def do() -> None:
            try:
                os.link(src, tmp)  # same file system: no bytes copied (objects are never modified in place)
            except OSError:
                shutil.copyfile(src, tmp)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dst)

        await asyncio.to_thread(do)

    # --- multipart ----------------------------------------------------------------------

    def _upload_dir(self, upload_id: str) -> Path:
        if not upload_id or not all(c in "0123456789abcdef" for c in upload_id):
            raise ObjectNotFound(f"upload {upload_id!r}")
        return self._multipart / upload_id

    def _checked_upload(self, key: str, upload_id: str) -> Path:
        d = self._upload_dir(upload_id)
        try:
            meta = json.loads((d / "upload.json").read_text())
        except FileNotFoundError:
            raise ObjectNotFound(f"upload {upload_id}") from None
        if meta["key"] != key:
            raise ObjectNotFound(f"upload {upload_id}")
        return d

    async def create_multipart(self, key: str) -> str:
        _check_key(key)
        upload_id = uuid.uuid4().hex
        d = self._upload_dir(upload_id)
        await asyncio.to_thread(d.mkdir, parents=True, mode=0o700)
        await asyncio.to_thread((d / "upload.json").write_text, json.dumps({"key": key}))
        return upload_id

    async def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        if not 1 <= number <= 10_000:
            raise ValueError("part number out of range")
        d = self._checked_upload(key, upload_id)
        # hashlib releases the GIL on large buffers: a 16 MiB part never blocks the event loop.
        etag = await asyncio.to_thread(lambda: hashlib.md5(data, usedforsecurity=False).hexdigest())

        async def one() -> AsyncIterator[bytes]:
            yield data

        await self._write(d / f"{number:05d}.{etag}.part", one())
        for old in d.glob(f"{number:05d}.*.part"):  # a re-sent part replaces the earlier one
            if old.name != f"{number:05d}.{etag}.part":
                old.unlink(missing_ok=True)
        return etag

    async def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        d = self._checked_upload(key, upload_id)
        parts = []
        for p in sorted(d.glob("*.part")):
            number, etag, _ = p.name.split(".")
            parts.append(PartInfo(int(number), etag, p.stat().st_size))
        return parts

    async def complete_multipart(self, key: str, upload_id: str, parts: list[PartInfo]) -> None:
        d = self._checked_upload(key, upload_id)
        files = []
        for part in sorted(parts, key=lambda p: p.number):
            f = d / f"{part.number:05d}.{part.etag}.part"
            if not f.exists():
                raise ObjectNotFound(f"part {part.number} of upload {upload_id}")
            files.append(f)

        target, tmp = self._path(key), self._tmp()

        def concatenate() -> None:  # in one worker thread, 8 MiB at a time (not a thread hop per MiB)
            try:
                with open(tmp, "wb") as out:
                    for f in files:
                        with open(f, "rb") as part:
                            shutil.copyfileobj(part, out, 8 * 1024 * 1024)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise

        await asyncio.to_thread(concatenate)
        await asyncio.to_thread(shutil.rmtree, d, True)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            d = self._upload_dir(upload_id)
        except ObjectNotFound:
            return
        await asyncio.to_thread(shutil.rmtree, d, True)

    async def presign_get(self, key: str, expires: timedelta, *, filename: str | None = None) -> str | None:
        return None

    async def presign_part(self, key: str, upload_id: str, number: int, expires: timedelta) -> str | None:
        return None

    async def presign_put(self, key: str, expires: timedelta) -> str | None:
        return None
