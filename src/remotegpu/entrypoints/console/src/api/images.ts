/** The image catalog (issue 15): platform and workspace images, saves and builds. */
import { http } from './client'
import type { Page } from './types'

export type ImageVisibility = 'platform' | 'workspace'
export type ImageStatus = 'pending' | 'ready' | 'failed'
export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled'

export interface CatalogImage {
  id: string
  name: string
  tag: string
  reference: string
  visibility: ImageVisibility
  workspace_id: string | null
  status: ImageStatus
  source: 'seed' | 'publish' | 'save' | 'build'
  digest: string
  size_bytes: number
  layers: number
  description: string
  metadata: Record<string, string>
  preload: boolean
  error: string
  created_by: string | null
  created_at: string
  updated_at: string
}

export interface ImageJob {
  id: string
  kind: 'save' | 'build'
  image_id: string
  workspace_id: string | null
  status: JobStatus
  target: string
  env_id: string | null
  base_reference: string
  host_id: string | null
  progress: string
  error: string
  log: string
  log_offset: number
  timeout_seconds: number
  cancel_requested: boolean
  created_by: string
  created_at: string
  started_at: string | null
  finished_at: string | null
}

export interface ImageWithJob {
  image: CatalogImage
  job: ImageJob
}

export interface ImageFilters {
  workspace_id?: string
  visibility?: ImageVisibility | ''
  status?: ImageStatus | ''
  q?: string
}

export interface BuildInput {
  workspace_id: string
  name: string
  tag: string
  dockerfile: string
  description: string
  timeout_seconds?: number
}

const enc = encodeURIComponent
const ONE = (id: string) => `/api/v1/images/${enc(id)}`

export const imageApi = {
  list: (filters: ImageFilters = {}) => {
    const query: Record<string, string> = {}
    for (const [k, v] of Object.entries(filters)) if (v) query[k] = String(v)
    return http.get<Page<CatalogImage>>('/api/v1/images', { query })
  },
  get: (id: string) => http.get<CatalogImage>(ONE(id)),
  update: (id: string, body: { description?: string; metadata?: Record<string, string> }) => http.patch<CatalogImage>(ONE(id), body),
  remove: (id: string) => http.delete<void>(ONE(id)),
  jobs: (id: string) => http.get<Page<ImageJob>>(`${ONE(id)}/jobs`),
  job: (jobId: string) => http.get<ImageJob>(`/api/v1/image-jobs/${enc(jobId)}`),
  cancel: (jobId: string) => http.post<ImageJob>(`/api/v1/image-jobs/${enc(jobId)}/cancel`),
  build: (body: BuildInput) => http.post<ImageWithJob>('/api/v1/images/builds', body),
  save: (envId: string, body: { name: string; tag: string; description: string }) =>
    http.post<ImageWithJob>(`/api/v1/environments/${enc(envId)}/save-image`, body),
}

export function formatBytes(n: number): string {
  if (!n) return '—'
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} GB`
  return `${Math.max(1, Math.round(n / 1e6))} MB`
}

export function jobFinished(job: ImageJob): boolean {
  return job.status === 'succeeded' || job.status === 'failed' || job.status === 'cancelled'
}
