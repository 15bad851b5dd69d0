/** Training jobs and inference services (the workloads context). */
import { http } from './client'
import type { Page } from './types'

export type JobStatus = 'pending' | 'queued' | 'starting' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'timed_out'

export interface JobNode { rank: number; host_id: string; gpu_uuids: string[]; state: string; exit_code: number | null; message: string }
export interface NodeExit { attempt: number; rank: number; host_id: string | null; exit_code: number | null; state: string | null; message: string | null }

export interface TrainingJob {
  id: string
  workspace_id: string
  owner_id: string
  name: string
  image: string
  command: string[]
  env: Record<string, string>
  gpus_per_node: number
  gpu_model: string | null
  nodes: number
  cpu_cores: number
  memory_gib: number
  time_limit_minutes: number | null
  max_retries: number
  priority: number
  status: JobStatus
  status_message: string
  attempt: number
  exit_code: number | null
  node_states: JobNode[]
  exit_codes: NodeExit[]
  history: { at: string; from: string; to: string; reason: string }[]
  output?: JobOutput | null
  created_at: string
  queued_at: string | null
  started_at: string | null
  finished_at: string | null
}

export type JobOutputState = 'waiting' | 'collecting' | 'done' | 'failed' | 'skipped'

/** Node 0's directory that becomes the next version of a model (or dataset) when the job succeeds. */
export interface JobOutput {
  kind: 'model' | 'dataset'
  repository_id: string
  name: string
  path: string
  state: JobOutputState
  version: number | null
  message: string
}

export interface JobInput {
  name: string
  command: string[]
  image?: string
  gpus_per_node: number
  gpu_model?: string | null
  nodes: number
  cpu_cores: number
  memory_gib: number
  time_limit_minutes?: number | null
  max_retries: number
  priority: number
  env?: Record<string, string>
  mounts?: { kind: 'dataset' | 'model'; name: string; version: string }[]
  output?: { kind: 'model' | 'dataset'; name: string; path: string }
}

export interface JobLog { node: string; attempt: number; rank: number; bytes: number }

const JOB = (id: string) => `/api/v1/training-jobs/${encodeURIComponent(id)}`

export const jobApi = {
  list: (workspaceId: string) => http.get<Page<TrainingJob>>('/api/v1/training-jobs', { query: { workspace_id: workspaceId } }),
  get: (id: string) => http.get<TrainingJob>(JOB(id)),
  create: (workspaceId: string, body: JobInput) => http.post<TrainingJob>('/api/v1/training-jobs', { workspace_id: workspaceId, ...body }),
  cancel: (id: string) => http.post<TrainingJob>(`${JOB(id)}/cancel`),
  logs: (id: string) => http.get<{ items: JobLog[]; total: number }>(`${JOB(id)}/logs`),
  logUrl: (id: string, node: string) => `${JOB(id)}/logs/${encodeURIComponent(node)}?download=true`,
  streamUrl: (id: string) => `${JOB(id)}/logs/stream`,
}

export interface Replica { id: string; generation: number; host_id: string; state: string; ready: boolean; message: string }
export interface ServiceStats {
  requests: number; errors: number; cold_starts: number; latency_p50_ms: number | null; latency_p99_ms: number | null
  rps_1m: number
  ready_replicas: number; in_flight: number
}

export interface InferenceService {
  id: string
  workspace_id: string
  owner_id: string
  name: string
  url: string
  image: string
  command: string[]
  port: number
  env: Record<string, string>
  health_path: string
  gpus: number
  gpu_model: string | null
  cpu_cores: number
  memory_gib: number
  min_replicas: number
  max_replicas: number
  target_concurrency: number
  public: boolean
  status: string
  status_message: string
  generation: number
  desired_replicas: number
  replicas: Replica[]
  stats: ServiceStats
  created_at: string
}

export interface ServiceInput {
  name: string
  image?: string
  command: string[]
  port: number
  health_path: string
  gpus: number
  cpu_cores: number
  memory_gib: number
  min_replicas: number
  max_replicas: number
  target_concurrency: number
  public: boolean
  mounts?: { kind: 'dataset' | 'model'; name: string; version: string }[]
}

const SVC = (id: string) => `/api/v1/inference-services/${encodeURIComponent(id)}`

export const serviceApi = {
  list: (workspaceId: string) => http.get<Page<InferenceService>>('/api/v1/inference-services', { query: { workspace_id: workspaceId } }),
  get: (id: string) => http.get<InferenceService>(SVC(id)),
  create: (workspaceId: string, body: ServiceInput) =>
    http.post<InferenceService>('/api/v1/inference-services', { workspace_id: workspaceId, ...body }),
  update: (id: string, body: Partial<ServiceInput>) => http.patch<InferenceService>(SVC(id), body),
  remove: (id: string) => http.delete<void>(SVC(id)),
  token: (id: string) => http.post<{ token: string }>(`${SVC(id)}/tokens`),
}

/** "python train.py --lr 0.1" → argv; quotes group words ("a b" or 'a b'). */
export function splitCommand(text: string): string[] {
  const out: string[] = []
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g
  let m: RegExpExecArray | null
  while ((m = re.exec(text)) !== null) out.push(m[1] ?? m[2] ?? m[3])
  return out
}
