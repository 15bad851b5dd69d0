"""/api/v1/datasets, /api/v1/models (the same routes for both kinds) and /api/v1/uploads."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from aiohttp import web

from remotegpu.application.storage.ports import ObjectNotFound
from remotegpu.domain.shared.errors import InvalidInput, NotFound, PermissionDenied
from remotegpu.domain.storage import models as m
from remotegpu.domain.storage.models import FileEntry, Kind, ModelInfo, Provenance, Repository, Upload, Version
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.common import Page
from remotegpu.entrypoints.http.schemas.storage import (
    ChangedFileOut, CollectOut, CompleteFileIn, DiffOut, DiffQuery, FileOut, FileQuery, FileUrlItem, FileUrlOut, FileUrlsIn, FileUrlsOut, ModelInfoIn, ModelInfoOut,
    PartOut, PartUrlsIn, PartUrlsOut, PendingFileOut, RepositoryIn, RepositoryListQuery, RepositoryOut, RepositoryPatchIn,
    SharedDiskIn, SharedDiskOut, SourceOut, StorageUsageOut, TagIn, UploadIn, UploadOut, VersionDetailOut, VersionOut, WholeFilesOut, WholeFilesQuery,
    WorkspaceQuery,
)

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _model(b: ModelInfoIn | None) -> ModelInfo | None:
    return None if b is None else ModelInfo(framework=b.framework, format=b.format, task=b.task, base_model=b.base_model,
                                            metrics=dict(b.metrics))


def _file(f: FileEntry) -> FileOut:
    return FileOut(path=f.path, size=f.size, sha256=f.sha256)


def _version(repo: Repository, v: Version, *, files: bool = False) -> VersionOut:
    fields = dict(number=v.number, message=v.message, file_count=len(v.files), size_bytes=v.size, created_by=v.created_by,
                  created_at=v.created_at, tags=sorted(t for t, n in repo.tags.items() if n == v.number),
                  source=SourceOut(kind=v.source.kind, id=v.source.id) if v.source else None)
    return VersionDetailOut(**fields, files=[_file(f) for f in v.files]) if files else VersionOut(**fields)


async def _repo_out(call: Call, repo: Repository, *, detail: bool = False) -> RepositoryOut:
    service = call.container.storage_service()
    latest = size = None
    if detail:
        versions = await service.catalog.list_versions(repo.id)
        latest = versions[-1].number if versions else None
        size = await service.catalog.repository_bytes(repo.id)
    model = repo.model
    return RepositoryOut(
        id=repo.id, workspace_id=repo.workspace_id, kind=repo.kind.value, name=repo.name, description=repo.description,
        visibility=repo.visibility, tags=repo.tags, latest_version=latest, size_bytes=size or 0,
        model=ModelInfoOut(framework=model.framework, format=model.format, task=model.task, base_model=model.base_model,
                           metrics=model.metrics) if model else None,
        created_at=repo.created_at, updated_at=repo.updated_at,
    )


def _upload(call: Call, u: Upload) -> UploadOut:
    return UploadOut(
        id=u.id, repository_id=u.repository_id, part_size=u.part_size, presigned=call.container.object_store().presigns,
        file_count=len(u.files), created_at=u.created_at, updated_at=u.updated_at,
        pending=[PendingFileOut(sha256=p.sha256, size=p.size, part_count=m.part_count(p.size, u.part_size), verified=p.verified,
                                received_parts=sorted(p.parts)) for p in sorted(u.pending.values(), key=lambda p: p.sha256)],
    )


def _range(request: web.Request, size: int) -> tuple[int, int] | None:
    """(offset, length) of a single ``Range: bytes=a-b`` header; None: the whole file."""
    header = request.headers.get("Range")
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or (not match[1] and not match[2]):
        return None
    if match[1]:
        start = int(match[1])
        end = min(int(match[2]), size - 1) if match[2] else size - 1
    else:
        start, end = max(0, size - int(match[2])), size - 1
    if start >= size or end < start:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return start, end - start + 1


def _disposition(name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "file"
    return f'attachment; filename="{safe}"'


def _register(kind: Kind) -> None:
    """The same routes for datasets and models; handler names carry the kind (operationIds)."""
    k = kind.value
    base = f"/api/v1/{k}s"
    one = base + "/{repository_id}"
    tags = [f"{k}s"]

    def route(method: str, path: str, name: str, **kw):
        def deco(fn):
            fn.__name__ = name
            fn.__doc__ = (fn.__doc__ or "").replace("{kind}", k)
            return api.route(method, path, tags=tags, **kw)(fn)
        return deco

    @route("POST", base, f"create_{k}", body=RepositoryIn, response=RepositoryOut, status=201, errors=[401, 403, 404, 409, 422])
    async def create(call: Call) -> RepositoryOut:
        """Create a {kind} in a workspace (members)."""
        b: RepositoryIn = call.body
        repo = await call.container.storage_service().create(call.user, kind, b.workspace_id, b.name, description=b.description,
                                                             visibility=b.visibility, model=_model(b.model))
        return await _repo_out(call, repo, detail=True)

    @route("GET", base, f"list_{k}s", query=RepositoryListQuery, response=Page[RepositoryOut], errors=[401, 403, 404, 422])
    async def listing(call: Call) -> Page[RepositoryOut]:
        """A workspace's {kind}s (with the public shelf), or only the public shelf without workspace_id."""
        q: RepositoryListQuery = call.query
        repos = await call.container.storage_service().list(call.user, kind, q.workspace_id, public=q.public)
        items = [await _repo_out(call, r, detail=True) for r in repos]
        return Page[RepositoryOut](items=items, total=len(items))

    @route("GET", one, f"get_{k}", response=RepositoryOut, errors=[401, 404])
    async def get(call: Call) -> RepositoryOut:
        """One {kind}, with its tags, latest version and stored bytes."""
        repo = await call.container.storage_service().get(call.user, kind, call.path("repository_id"))
        return await _repo_out(call, repo, detail=True)

    @route("PATCH", one, f"update_{k}", body=RepositoryPatchIn, response=RepositoryOut, errors=[401, 403, 404, 422])
    async def update(call: Call) -> RepositoryOut:
        """Change the description or model metadata (members); visibility (platform administrators)."""
        b: RepositoryPatchIn = call.body
        repo = await call.container.storage_service().update(call.user, kind, call.path("repository_id"), description=b.description,
                                                             visibility=b.visibility, model=_model(b.model))
        return await _repo_out(call, repo, detail=True)

    @route("DELETE", one, f"delete_{k}", status=204, errors=[401, 403, 404])
    async def delete(call: Call) -> None:
        """Delete a {kind} and its versions (members); blobs no other version uses are collected later."""
        await call.container.storage_service().delete(call.user, kind, call.path("repository_id"))

    @route("GET", one + "/versions", f"list_{k}_versions", response=Page[VersionOut], errors=[401, 404])
    async def versions(call: Call) -> Page[VersionOut]:
        """Versions, oldest first."""
        service = call.container.storage_service()
        repo = await service.get(call.user, kind, call.path("repository_id"))
        items = [_version(repo, v) for v in await service.versions(call.user, kind, repo.id)]
        return Page[VersionOut](items=items, total=len(items))

    @route("GET", one + "/versions/{ref}", f"get_{k}_version", response=VersionDetailOut, errors=[401, 404])
    async def version(call: Call) -> VersionDetailOut:
        """One version (number, tag or 'latest') with its manifest."""
        repo, v = await call.container.storage_service().version(call.user, kind, call.path("repository_id"), call.path("ref"))
        return _version(repo, v, files=True)

    @route("DELETE", one + "/versions/{ref}", f"delete_{k}_version", status=204, errors=[401, 403, 404])
    async def delete_version(call: Call) -> None:
        """Delete a version by number (members); its tags go with it."""
        ref = call.path("ref")
        if not ref.isdigit():
            raise NotFound("versions are deleted by number")
        await call.container.storage_service().delete_version(call.user, kind, call.path("repository_id"), int(ref))

    @route("GET", one + "/diff", f"diff_{k}_versions", query=DiffQuery, response=DiffOut, errors=[401, 404, 422])
    async def diff(call: Call) -> DiffOut:
        """Files added, removed and changed between two versions."""
        q: DiffQuery = call.query
        a, b, d = await call.container.storage_service().diff(call.user, kind, call.path("repository_id"), q.from_, q.to)
        return DiffOut(from_version=a.number, to_version=b.number, added=[_file(f) for f in d.added],
                       removed=[_file(f) for f in d.removed], unchanged=d.unchanged,
                       changed=[ChangedFileOut(path=x.path, before=_file(x), after=_file(y)) for x, y in d.changed])

    @route("PUT", one + "/tags/{tag}", f"set_{k}_tag", body=TagIn, response=RepositoryOut, errors=[401, 403, 404, 422])
    async def set_tag(call: Call) -> RepositoryOut:
        """Point a named tag at a version (members)."""
        repo = await call.container.storage_service().set_tag(call.user, kind, call.path("repository_id"), call.path("tag"),
                                                              call.body.version)
        return await _repo_out(call, repo, detail=True)

    @route("DELETE", one + "/tags/{tag}", f"delete_{k}_tag", status=204, errors=[401, 403, 404])
    async def delete_tag(call: Call) -> None:
        """Remove a tag (members); the version stays."""
        await call.container.storage_service().delete_tag(call.user, kind, call.path("repository_id"), call.path("tag"))

    @route("POST", one + "/uploads", f"start_{k}_upload", body=UploadIn, response=UploadOut, status=201,
           errors=[401, 403, 404, 409, 422])
    async def start_upload(call: Call) -> UploadOut:
        """Start the next version: declare its files (path, size, sha256); the answer lists the blobs to send (members)."""
        b: UploadIn = call.body
        upload = await call.container.storage_service().start_upload(
            call.user, kind, call.path("repository_id"), [FileEntry(f.path, f.size, f.sha256) for f in b.files],
            message=b.message, tag=b.tag, part_size=b.part_size,
            source=Provenance(b.source.kind, b.source.id) if b.source else None)
        return _upload(call, upload)

    @route("GET", one + "/versions/{ref}/file", f"download_{k}_file", query=FileQuery, errors=[401, 404, 416, 422])
    async def download(call: Call) -> web.StreamResponse:
        """One file's bytes through the platform (Range supported)."""
        service = call.container.storage_service()
        _, entry = await service.file(call.user, kind, call.path("repository_id"), call.path("ref"), call.query.path)
        span = _range(call.request, entry.size)
        offset, length = span if span else (0, entry.size)
        response = web.StreamResponse(status=206 if span else 200, headers={
            "Content-Type": "application/octet-stream", "Content-Length": str(length), "Accept-Ranges": "bytes",
            "Content-Disposition": _disposition(entry.path.rsplit("/", 1)[-1]), "X-Checksum-Sha256": entry.sha256,
            **({"Content-Range": f"bytes {offset}-{offset + length - 1}/{entry.size}"} if span else {}),
        })
        try:
            chunks = await service.open_file(entry, offset=offset, length=length)
        except ObjectNotFound:
            raise NotFound("the file's bytes are missing from the object store") from None
        await response.prepare(call.request)
        async for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
        return response

    @route("GET", one + "/versions/{ref}/file-url", f"{k}_file_url", query=FileQuery, response=FileUrlOut, errors=[401, 404, 422])
    async def file_url(call: Call) -> FileUrlOut:
        """Where to download a file: a presigned object-store URL, or the platform's own (same authentication)."""
        service = call.container.storage_service()
        repo_id, ref = call.path("repository_id"), call.path("ref")
        version, entry = await service.file(call.user, kind, repo_id, ref, call.query.path)
        url = await service.file_url(entry)
        if url:
            return FileUrlOut(url=url, presigned=True, expires_at=datetime.now(timezone.utc) + service.presign_ttl)
        from urllib.parse import quote

        return FileUrlOut(url=f"{base}/{repo_id}/versions/{version.number}/file?path={quote(entry.path)}", presigned=False,
                          expires_at=None)

    @route("POST", one + "/versions/{ref}/file-urls", f"{k}_file_urls", body=FileUrlsIn, response=FileUrlsOut,
           errors=[401, 404, 422])
    async def file_urls(call: Call) -> FileUrlsOut:
        """Where to download up to 1000 files of a version, in one call (what `pull` uses)."""
        service = call.container.storage_service()
        repo_id = call.path("repository_id")
        version, found = await service.file_urls(call.user, kind, repo_id, call.path("ref"), call.body.paths)
        from urllib.parse import quote

        items = [FileUrlItem(path=e.path, url=url, presigned=True) if url else
                 FileUrlItem(path=e.path, url=f"{base}/{repo_id}/versions/{version.number}/file?path={quote(e.path)}",
                             presigned=False) for e, url in found]
        signed = any(i.presigned for i in items)
        return FileUrlsOut(expires_at=datetime.now(timezone.utc) + service.presign_ttl if signed else None, items=items)

    @route("GET", one + "/versions/{ref}/archive", f"download_{k}_archive", errors=[401, 404])
    async def archive(call: Call) -> web.StreamResponse:
        """The whole version as a tar, streamed (files under <name>/)."""
        service = call.container.storage_service()
        repo, v = await service.version(call.user, kind, call.path("repository_id"), call.path("ref"))
        response = web.StreamResponse(headers={"Content-Type": "application/x-tar",
                                               "Content-Disposition": _disposition(f"{repo.name}-v{v.number}.tar")})
        await response.prepare(call.request)
        async for chunk in service.archive(v, repo.name):
            await response.write(chunk)
        await response.write_eof()
        return response


for _kind in Kind:
    _register(_kind)

UPLOAD = "/api/v1/uploads/{upload_id}"
UTAGS = ["uploads"]


@api.get(UPLOAD, response=UploadOut, tags=UTAGS, errors=[401, 404])
async def get_upload(call: Call) -> UploadOut:
    """An open upload: which files are verified and which parts arrived (resume from here)."""
    return _upload(call, await call.container.storage_service().get_upload(call.user, call.path("upload_id")))


@api.post(UPLOAD + "/files/{sha256}/part-urls", body=PartUrlsIn, response=PartUrlsOut, tags=UTAGS, errors=[401, 404, 409, 422])
async def upload_part_urls(call: Call) -> PartUrlsOut:
    """Presigned URLs to PUT parts straight to the object store (presigned=false: PUT them to the platform instead)."""
    urls = await call.container.storage_service().part_urls(call.user, call.path("upload_id"), call.path("sha256"), call.body.numbers)
    return PartUrlsOut(presigned=urls is not None, urls=urls or {})


async def _body_of_one_part(call: Call) -> bytearray:
    """The request body, refused with 413 past one part's size (declared or as it arrives)."""
    declared = call.request.content_length
    if declared is not None and declared > m.MAX_PART_SIZE:
        raise web.HTTPRequestEntityTooLarge(max_size=m.MAX_PART_SIZE, actual_size=declared)
    data = bytearray()
    async for chunk in call.request.content.iter_chunked(1024 * 1024):
        data += chunk
        if len(data) > m.MAX_PART_SIZE:
            raise web.HTTPRequestEntityTooLarge(max_size=m.MAX_PART_SIZE, actual_size=len(data))
    return data


@api.put(UPLOAD + "/files/{sha256}/parts/{number}", response=PartOut, tags=UTAGS, errors=[401, 404, 409, 413, 422])
async def upload_part(call: Call) -> PartOut:
    """One part through the platform: the raw bytes as the body (application/octet-stream)."""
    number = call.path("number")
    if not number.isdigit() or not 1 <= int(number) <= 10_000:
        raise InvalidInput("part number: 1..10000", details={"field": "number"})
    data = await _body_of_one_part(call)
    # The bytearray as it is (no second 64 MiB copy): the stores take any bytes-like object.
    etag = await call.container.storage_service().put_part(call.user, call.path("upload_id"), call.path("sha256"), int(number),
                                                           data)
    return PartOut(number=int(number), etag=etag)


@api.post(UPLOAD + "/files", query=WholeFilesQuery, response=WholeFilesOut, tags=UTAGS, errors=[401, 404, 409, 413, 422])
async def upload_whole_files(call: Call) -> WholeFilesOut:
    """Many small files in one request: the body is their bytes one after the other, in the
    order of ``sha256`` (each a file of one part; 64 MiB at most in all). Each is hashed,
    stored and verified; one that does not match refuses the lot (422 checksum_mismatch,
    nothing stored)."""
    data = await _body_of_one_part(call)
    digests = call.query.sha256.split(",")
    verified = await call.container.storage_service().put_whole_files(call.user, call.path("upload_id"), digests, data)
    return WholeFilesOut(verified=verified)


@api.post(UPLOAD + "/files/{sha256}/complete", body=CompleteFileIn, response=UploadOut, tags=UTAGS, errors=[401, 404, 409, 422])
async def complete_upload_file(call: Call) -> UploadOut:
    """Assemble a file's parts and verify its sha256 and size from the stored bytes (422 checksum_mismatch: send it again)."""
    b: CompleteFileIn = call.body
    upload = await call.container.storage_service().complete_file(
        call.user, call.path("upload_id"), call.path("sha256"), [(p.number, p.etag) for p in b.parts] if b.parts else None)
    return _upload(call, upload)


@api.post(UPLOAD + "/commit", response=VersionOut, status=201, tags=UTAGS, errors=[401, 404, 409])
async def commit_upload(call: Call) -> VersionOut:
    """Commit the version: only when every file is verified (409 upload_incomplete otherwise)."""
    service = call.container.storage_service()
    version = await service.commit(call.user, call.path("upload_id"))
    repo = await service.catalog.get_repository(version.repository_id)
    return _version(repo, version)


@api.delete(UPLOAD, status=204, tags=UTAGS, errors=[401, 404])
async def abort_upload(call: Call) -> None:
    """Abandon an upload; its parts are discarded."""
    await call.container.storage_service().abort(call.user, call.path("upload_id"))


@api.get("/api/v1/storage/usage", query=WorkspaceQuery, response=StorageUsageOut, tags=["datasets"], errors=[401, 404, 422])
async def storage_usage(call: Call) -> StorageUsageOut:
    """Bytes the workspace's datasets and models hold (distinct blobs; counts toward storage_gib)."""
    ws = call.query.workspace_id
    return StorageUsageOut(workspace_id=ws, used_bytes=await call.container.storage_service().workspace_usage(call.user, ws))


SHARED_DISK = "/api/v1/workspaces/{workspace_id}/shared-disk"


def _shared_disk(workspace_id: str, disk) -> SharedDiskOut:
    return SharedDiskOut(workspace_id=workspace_id, enabled=disk is not None, size_gib=disk.size_gib if disk else None,
                         mount_path=m.SHARED_DISK_PATH, updated_at=disk.updated_at if disk else None)


@api.get(SHARED_DISK, response=SharedDiskOut, tags=["datasets"], errors=[401, 404])
async def get_shared_disk(call: Call) -> SharedDiskOut:
    """The workspace's shared disk: a read-write volume at /root/shared in each of its environments, one per host."""
    ws = call.path("workspace_id")
    return _shared_disk(ws, await call.container.storage_service().shared_disk(call.user, ws))


@api.put(SHARED_DISK, body=SharedDiskIn, response=SharedDiskOut, tags=["datasets"], errors=[401, 403, 404, 409, 422])
async def set_shared_disk(call: Call) -> SharedDiskOut:
    """Turn on or resize the shared disk (workspace admins); its size counts against storage_gib. Environments get it at their next start."""
    ws = call.path("workspace_id")
    return _shared_disk(ws, await call.container.storage_service().set_shared_disk(call.user, ws, call.body.size_gib))


@api.delete(SHARED_DISK, status=204, tags=["datasets"], errors=[401, 403, 404])
async def remove_shared_disk(call: Call) -> None:
    """Turn the shared disk off (workspace admins): environments started from now on no longer mount it; data on hosts is kept."""
    await call.container.storage_service().remove_shared_disk(call.user, call.path("workspace_id"))


@api.post("/api/v1/storage/collect", response=CollectOut, tags=["datasets"], errors=[401, 403])
async def collect_storage(call: Call) -> CollectOut:
    """Run garbage collection now (platform administrators; it also runs periodically)."""
    if not call.user.is_admin:
        raise PermissionDenied("platform administrators only", code="admin_required")
    report = await call.container.storage_service().collect()
    return CollectOut(blobs_removed=report.blobs_removed, bytes_freed=report.bytes_freed, uploads_cleaned=report.uploads_cleaned)


# --- agents: what environments on their host mount ------------------------------------------

@api.get("/api/v1/agent/storage/{repository_id}/versions/{version}", response=VersionDetailOut, auth=False, tags=["agent"],
         errors=[401, 404])
async def agent_storage_manifest(call: Call) -> VersionDetailOut:
    """A version's manifest, for an agent whose host runs an environment that mounts it (Bearer: agent token)."""
    from remotegpu.entrypoints.http.handlers.agent import _agent_token

    repo_id, number = call.path("repository_id"), call.path("version")
    await call.container.agent_service().agent_may_read(_agent_token(call), repo_id)
    if not number.isdigit():
        raise NotFound("version not found")
    mounts = call.container.storage_mounts()
    files = await mounts.manifest(repo_id, int(number))
    repo = await mounts.service.catalog.get_repository(repo_id)
    version = await mounts.service.catalog.get_version(repo_id, int(number))
    return _version(repo, version, files=True) if files else _version(repo, version, files=True)


@api.get("/api/v1/agent/storage/{repository_id}/blobs/{sha256}", auth=False, tags=["agent"], errors=[401, 404])
async def agent_storage_blob(call: Call) -> web.StreamResponse:
    """A blob's bytes, for an agent whose host runs an environment that mounts its dataset or model (Bearer: agent token)."""
    from remotegpu.entrypoints.http.handlers.agent import _agent_token

    repo_id, digest = call.path("repository_id"), call.path("sha256")
    await call.container.agent_service().agent_may_read(_agent_token(call), repo_id)
    mounts = call.container.storage_mounts()
    version_files = [f for v in await mounts.service.catalog.list_versions(repo_id) for f in v.files if f.sha256 == digest]
    if not version_files:
        raise NotFound("blob not found")
    chunks = await mounts.open_blob(digest)
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream", "Content-Length": str(version_files[0].size)})
    await response.prepare(call.request)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response
