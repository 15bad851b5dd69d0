/** Datasets and models: repositories, versions, diff, uploads (through the platform) and downloads. */
import { ApiError, buildUrl, http } from './client'
import type { Page } from './types'
import { sha256OfFile } from '../utils/sha256'

export type Kind = 'dataset' | 'model'

export interface ModelInfo {
  framework: string
  format: string
  task: string
  base_model: string
  metrics: Record<string, unknown>
}

export interface Repository {
  id: string
  workspace_id: string
  kind: Kind
  name: string
  description: string
  visibility: 'private' | 'public'
  tags: Record<string, number>
  model: ModelInfo | null
  latest_version: number | null
  size_bytes: number
  created_at: string
  updated_at: string
}

export interface FileEntry {
  path: string
  size: number
  sha256: string
}

export interface Version {
  number: number
  message: string
  file_count: number
  size_bytes: number
  created_by: string
  created_at: string
  tags: string[]
  files?: FileEntry[]
  /** The environment or training job that made it; null: uploaded by a person. */
  source?: { kind: 'environment' | 'job'; id: string } | null
}

export interface Diff {
  from_version: number
  to_version: number
  added: FileEntry[]
  removed: FileEntry[]
  changed: { path: string; before: FileEntry; after: FileEntry }[]
  unchanged: number
}

interface PendingFile {
  sha256: string
  size: number
  part_count: number
  verified: boolean
  received_parts: number[]
}

interface Upload {
  id: string
  part_size: number
  /** true: parts may go straight to the object store (part-urls). */
  presigned: boolean
  pending: PendingFile[]
}

const enc = encodeURIComponent
const base = (kind: Kind) => `/api/v1/${kind}s`
const one = (kind: Kind, id: string) => `${base(kind)}/${enc(id)}`

export const storageApi = {
  list: (kind: Kind, workspaceId: string) => http.get<Page<Repository>>(base(kind), { query: { workspace_id: workspaceId } }),
  get: (kind: Kind, id: string) => http.get<Repository>(one(kind, id)),
  create: (kind: Kind, body: { workspace_id: string; name: string; description: string; model?: Partial<ModelInfo> }) =>
    http.post<Repository>(base(kind), body),
  remove: (kind: Kind, id: string) => http.delete<void>(one(kind, id)),
  versions: (kind: Kind, id: string) => http.get<Page<Version>>(`${one(kind, id)}/versions`),
  version: (kind: Kind, id: string, ref: string) => http.get<Version>(`${one(kind, id)}/versions/${enc(ref)}`),
  diff: (kind: Kind, id: string, from: string, to: string) => http.get<Diff>(`${one(kind, id)}/diff`, { query: { from, to } }),
  fileUrl: (kind: Kind, id: string, version: number, path: string) =>
    buildUrl(`${one(kind, id)}/versions/${version}/file`, { path }),
  archiveUrl: (kind: Kind, id: string, version: number) => buildUrl(`${one(kind, id)}/versions/${version}/archive`),
  sharedDisk: (workspaceId: string) => http.get<SharedDisk>(`/api/v1/workspaces/${enc(workspaceId)}/shared-disk`),
  setSharedDisk: (workspaceId: string, sizeGib: number) =>
    http.put<SharedDisk>(`/api/v1/workspaces/${enc(workspaceId)}/shared-disk`, { size_gib: sizeGib }),
  removeSharedDisk: (workspaceId: string) => http.delete<void>(`/api/v1/workspaces/${enc(workspaceId)}/shared-disk`),
}

/** The workspace's shared disk: /root/shared in each of its environments, one volume per host. */
export interface SharedDisk {
  workspace_id: string
  enabled: boolean
  size_gib: number | null
  mount_path: string
  per_host: boolean
  updated_at: string | null
}

export interface UploadProgress {
  phase: 'hashing' | 'uploading' | 'verifying' | 'done'
  done: number
  total: number
  /** How the parts travel: straight to the object store by presigned URL, or through the platform. */
  route?: 'direct' | 'platform'
}

/** Parts asked for presigned URLs at once. */
const URL_BATCH = 100

async function putThroughPlatform(uploadId: string, sha256: string, n: number, part: Blob, csrf: string | null): Promise<void> {
  const headers: Record<string, string> = { 'Content-Type': 'application/octet-stream' }
  if (csrf) headers['X-CSRF-Token'] = csrf
  const resp = await fetch(`/api/v1/uploads/${enc(uploadId)}/files/${sha256}/parts/${n}`, {
    method: 'PUT', body: part, headers, credentials: 'same-origin',
  })
  if (!resp.ok) {
    let body = { code: `http_${resp.status}`, message: resp.statusText }
    try { body = (await resp.json()).error ?? body } catch { /* not JSON */ }
    throw new ApiError(resp.status, body)
  }
}

/**
 * A part straight to the object store (S3) by its presigned URL: no cookie, no platform in
 * the way. The bucket's CORS rules must allow this origin and expose ETag (the S3 adapter
 * writes them; README "Object storage"). Returns the part's ETag, or null when the browser
 * could not reach or read it (CORS missing, store unreachable): the caller sends the part
 * through the platform instead.
 */
async function putDirect(url: string, part: Blob): Promise<string | null> {
  let resp: Response
  try {
    resp = await fetch(url, { method: 'PUT', body: part, credentials: 'omit', mode: 'cors' })
  } catch {
    return null
  }
  const etag = resp.headers.get('ETag')
  if (!resp.ok || !etag) return null
  return etag.replace(/"/g, '')
}

/**
 * Upload files as the next version: hash them (sha256), declare the manifest, send the
 * parts the platform does not have yet — straight to the object store by presigned URL
 * when it signs (S3), through the platform otherwise or when the browser cannot reach the
 * store — let it verify each file, commit. Files the platform already stores (any version)
 * are not sent again.
 */
export async function uploadVersion(
  kind: Kind, repoId: string, files: { path: string; file: File }[], csrf: string | null,
  message: string, onProgress: (p: UploadProgress) => void,
): Promise<Version> {
  const total = files.reduce((n, f) => n + f.file.size, 0)
  let hashed = 0
  const manifest: FileEntry[] = []
  for (const f of files) {
    const before = hashed
    const sha256 = await sha256OfFile(f.file, (d) => onProgress({ phase: 'hashing', done: before + d, total }))
    hashed += f.file.size
    manifest.push({ path: f.path, size: f.file.size, sha256 })
  }
  const upload = await http.post<Upload>(`${one(kind, repoId)}/uploads`, { files: manifest, message, part_size: 8 * 1024 * 1024 })
  const bySha = new Map(manifest.map((m, i) => [m.sha256, files[i].file]))
  const sending = upload.pending.reduce((n, p) => n + p.size, 0)
  let sent = 0
  let route: 'direct' | 'platform' = upload.presigned ? 'direct' : 'platform'
  onProgress({ phase: 'uploading', done: 0, total: sending, route })
  for (const p of upload.pending) {
    const file = bySha.get(p.sha256)!
    const parts: { number: number; etag: string }[] = []
    for (let first = 1; first <= p.part_count; first += URL_BATCH) {
      const numbers = Array.from({ length: Math.min(URL_BATCH, p.part_count - first + 1) }, (_, i) => first + i)
      let urls: Record<string, string> = {}
      if (route === 'direct') {
        const answer = await http.post<{ presigned: boolean; urls: Record<string, string> }>(
          `/api/v1/uploads/${enc(upload.id)}/files/${p.sha256}/part-urls`, { numbers })
        urls = answer.presigned ? answer.urls : {}
      }
      for (const n of numbers) {
        const part = file.slice((n - 1) * upload.part_size, n * upload.part_size)
        const etag = urls[String(n)] ? await putDirect(urls[String(n)], part) : null
        if (etag) {
          parts.push({ number: n, etag })
        } else {
          if (route === 'direct') { route = 'platform'; urls = {} }  // the store is out of reach: the rest goes through the platform
          await putThroughPlatform(upload.id, p.sha256, n, part, csrf)
        }
        sent += part.size
        onProgress({ phase: 'uploading', done: sent, total: sending, route })
      }
    }
    onProgress({ phase: 'verifying', done: sent, total: sending, route })
    await http.post(`/api/v1/uploads/${enc(upload.id)}/files/${p.sha256}/complete`, parts.length ? { parts } : {})
  }
  const version = await http.post<Version>(`/api/v1/uploads/${enc(upload.id)}/commit`)
  onProgress({ phase: 'done', done: sending, total: sending, route })
  return version
}
