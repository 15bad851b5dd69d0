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
}

export interface UploadProgress {
  phase: 'hashing' | 'uploading' | 'verifying' | 'done'
  done: number
  total: number
}

/**
 * Upload files as the next version: hash them (sha256), declare the manifest, send the
 * parts the platform does not have yet (through the platform), let it verify each file,
 * commit. Files the platform already stores (any version) are not sent again.
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
  onProgress({ phase: 'uploading', done: 0, total: sending })
  for (const p of upload.pending) {
    const file = bySha.get(p.sha256)!
    for (let n = 1; n <= p.part_count; n++) {
      const part = file.slice((n - 1) * upload.part_size, n * upload.part_size)
      const headers: Record<string, string> = { 'Content-Type': 'application/octet-stream' }
      if (csrf) headers['X-CSRF-Token'] = csrf
      const resp = await fetch(`/api/v1/uploads/${enc(upload.id)}/files/${p.sha256}/parts/${n}`, {
        method: 'PUT', body: part, headers, credentials: 'same-origin',
      })
      if (!resp.ok) {
        let body = { code: `http_${resp.status}`, message: resp.statusText }
        try { body = (await resp.json()).error ?? body } catch { /* not JSON */ }
        throw new ApiError(resp.status, body)
      }
      sent += part.size
      onProgress({ phase: 'uploading', done: sent, total: sending })
    }
    onProgress({ phase: 'verifying', done: sent, total: sending })
    await http.post(`/api/v1/uploads/${enc(upload.id)}/files/${p.sha256}/complete`, {})
  }
  const version = await http.post<Version>(`/api/v1/uploads/${enc(upload.id)}/commit`)
  onProgress({ phase: 'done', done: sending, total: sending })
  return version
}
