/** Metrics (latest, history) and alert rules / alerts / silences. */
import { http } from './client'
import type { Page } from './types'

export type Scope = 'environment' | 'workspace' | 'host' | 'fleet'

export interface Sample {
  metric: string
  value: number
  at: string
  host_id: string
  environment_id: string
  workspace_id: string
  gpu_uuid: string
}

export interface MetricPoint { t: string; avg: number; min: number; max: number; count: number }

export interface MetricSeries {
  metric: string
  host_id: string
  environment_id: string
  workspace_id: string
  gpu_uuid: string
  points: MetricPoint[]
}

export interface History { metric: string; start: string; end: string; step: number; series: MetricSeries[] }

export interface AlertRule {
  id: string
  name: string
  type: string
  scope: 'workspace' | 'platform'
  workspace_id: string | null
  metric: string
  op: string
  threshold: number
  for_seconds: number
  keep_firing_for_seconds: number
  env_id: string
  severity: 'info' | 'warning' | 'critical'
  enabled: boolean
  created_at: string
  updated_at: string
}

export interface AlertRuleInput {
  name: string
  type: string
  workspace_id?: string | null
  metric?: string | null
  op?: string | null
  threshold?: number | null
  for_seconds: number
  keep_firing_for_seconds: number
  severity: string
}

export interface Alert {
  id: string
  rule_id: string
  rule_name: string
  workspace_id: string | null
  labels: Record<string, string>
  status: 'pending' | 'firing' | 'resolved'
  value: number | null
  pending_since: string
  fired_at: string | null
  resolved_at: string | null
  silenced: boolean
}

export interface Silence {
  id: string
  scope: string
  workspace_id: string | null
  rule_id: string
  matchers: Record<string, string>
  starts_at: string
  ends_at: string
  comment: string
  created_at: string
}

export const GPU_UTIL = 'DCGM_FI_DEV_GPU_UTIL'
export const FB_USED = 'DCGM_FI_DEV_FB_USED'
export const POWER = 'DCGM_FI_DEV_POWER_USAGE'
export const GPU_TEMP = 'DCGM_FI_DEV_GPU_TEMP'
export const CPU_CORES = 'remotegpu_container_cpu_cores'
export const CPU_PERCENT = 'remotegpu_container_cpu_percent'
export const MEM_USED = 'remotegpu_container_memory_used_mib'
export const NET_RX = 'remotegpu_container_network_rx_bytes_per_second'
export const NET_TX = 'remotegpu_container_network_tx_bytes_per_second'

const ws = (workspaceId: string | null) => (workspaceId ? { workspace_id: workspaceId } : {})

export const metricsApi = {
  latest: (scope: Scope, id?: string, metric?: string) =>
    http.get<{ items: Sample[] }>('/api/v1/metrics', { query: { scope, ...(id ? { id } : {}), ...(metric ? { metric } : {}) } }),
  history: (scope: Scope, id: string | undefined, metric: string, from: Date, to: Date, step?: number) =>
    http.get<History>('/api/v1/metrics/history', {
      query: { scope, ...(id ? { id } : {}), metric, from: from.toISOString(), to: to.toISOString(), ...(step ? { step } : {}) },
    }),
}

export const alertApi = {
  rules: (workspaceId: string | null) => http.get<Page<AlertRule>>('/api/v1/alert-rules', { query: ws(workspaceId) }),
  createRule: (body: AlertRuleInput) => http.post<AlertRule>('/api/v1/alert-rules', body),
  updateRule: (id: string, body: Partial<AlertRuleInput> & { enabled?: boolean }) =>
    http.patch<AlertRule>(`/api/v1/alert-rules/${encodeURIComponent(id)}`, body),
  deleteRule: (id: string) => http.delete<void>(`/api/v1/alert-rules/${encodeURIComponent(id)}`),
  silences: (workspaceId: string | null) => http.get<Page<Silence>>('/api/v1/alert-silences', { query: ws(workspaceId) }),
  createSilence: (body: { workspace_id: string | null; rule_id: string; ends_at: string; comment?: string }) =>
    http.post<Silence>('/api/v1/alert-silences', body),
  deleteSilence: (id: string) => http.delete<void>(`/api/v1/alert-silences/${encodeURIComponent(id)}`),
  alerts: (workspaceId: string | null, status?: string) =>
    http.get<Page<Alert>>('/api/v1/alerts', { query: { ...ws(workspaceId), ...(status ? { status } : {}), limit: 200 } }),
}
