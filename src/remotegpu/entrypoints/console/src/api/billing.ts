/** Billing: prices, a workspace's wallet and ledger, usage, monthly bills (amounts in minor units). */
import { http } from './client'
import type { Page } from './types'

export interface Price {
  id: string
  kind: 'gpu' | 'cpu' | 'memory' | 'disk' | 'nogpu' | 'gpu_month' | 'gpu_year'
  model: string
  unit_price: number
  period: 'hour' | 'day' | 'month' | 'year'
  effective_from: string
  currency: string
}

export interface Wallet {
  workspace_id: string
  balance: number
  currency: string
  month_charges: number
  hourly_burn: number
  warn_below: number
  in_arrears_since: string | null
  budget_monthly: number | null
  budget_hard_stop: boolean
  billing_enabled: boolean
}

export interface LedgerEntry {
  id: string
  workspace_id: string
  kind: 'topup' | 'charge' | 'plan' | 'refund' | 'adjustment' | 'credit' | 'credit_expiry'
  amount: number
  at: string
  reason: string
  actor_id: string | null
  period: string
  expires_at: string | null
}

export type UsageGroup = 'environment' | 'user' | 'gpu_model' | 'day' | 'kind' | 'job'

export interface Usage {
  workspace_id: string
  start: string
  end: string
  group_by: UsageGroup
  currency: string
  total: number
  groups: Array<{ key: string; amount: number; seconds: number }>
}

export interface BillLine {
  environment_id: string
  kind: string
  model: string
  quantity: number
  unit_price: number
  seconds: number
  amount: number
}

export interface BillAdjustment {
  entry_id: string
  kind: 'adjustment' | 'refund' | 'credit' | 'credit_expiry'
  amount: number
  at: string
  reason: string
  actor_id: string | null
}

export interface Bill {
  workspace_id: string
  period: string
  status: 'draft' | 'finalized'
  total: number
  charged: number
  currency: string
  finalized_at: string | null
  lines: BillLine[]
  adjustments: BillAdjustment[]
  adjustments_total: number
  net: number
}

export interface Plan {
  id: string
  workspace_id: string
  gpu_model: string
  gpu_count: number
  term: 'month' | 'year'
  price: number
  starts_at: string
  ends_at: string
  term_started_at: string
  auto_renew: boolean
  status: 'active' | 'cancelled' | 'expired'
  terms: number
  currency: string
}

export const billingApi = {
  plans: (workspaceId: string) => http.get<Page<Plan>>('/api/v1/billing/plans', { query: { workspace_id: workspaceId } }),
  buyPlan: (body: { workspace_id: string; gpu_model: string; gpu_count: number; term: string; auto_renew: boolean }) =>
    http.post<Plan>('/api/v1/billing/plans', body),
  setAutoRenew: (id: string, autoRenew: boolean) => http.patch<Plan>(`/api/v1/billing/plans/${encodeURIComponent(id)}`, { auto_renew: autoRenew }),
  renewPlan: (id: string) => http.post<Plan>(`/api/v1/billing/plans/${encodeURIComponent(id)}/renew`),
  cancelPlan: (id: string) => http.post<{ plan: Plan; refund: number }>(`/api/v1/billing/plans/${encodeURIComponent(id)}/cancel`),
  prices: () => http.get<Page<Price>>('/api/v1/billing/prices'),
  setPrice: (body: { kind: string; model?: string; unit_price: number }) => http.post<Price>('/api/v1/billing/prices', body),
  estimate: (q: { gpu_model: string | null; gpu_count: number; cpu_cores: number; memory_gib: number; disk_gib: number }) =>
    http.get<{ hourly_price: number; currency: string }>('/api/v1/billing/estimate', {
      query: { ...q, gpu_model: q.gpu_model ?? undefined }, quiet: true,
    }),
  wallet: (workspaceId: string) => http.get<Wallet>('/api/v1/billing/wallet', { query: { workspace_id: workspaceId } }),
  updateWallet: (workspaceId: string, body: { warn_below?: number; budget_monthly?: number | null; budget_hard_stop?: boolean }) =>
    http.patch<Wallet>('/api/v1/billing/wallet', { workspace_id: workspaceId, ...body }),
  entries: (workspaceId: string, limit = 50, offset = 0) =>
    http.get<Page<LedgerEntry>>('/api/v1/billing/wallet/entries', { query: { workspace_id: workspaceId, limit, offset } }),
  book: (body: { workspace_id: string; kind: string; amount: number; reason: string; reference?: string }) =>
    http.post<LedgerEntry>('/api/v1/billing/wallet/entries', body),
  usage: (workspaceId: string, groupBy: UsageGroup) =>
    http.get<Usage>('/api/v1/billing/usage', { query: { workspace_id: workspaceId, group_by: groupBy } }),
  bills: (workspaceId: string) => http.get<{ items: Bill[]; total: number }>('/api/v1/billing/bills', { query: { workspace_id: workspaceId } }),
  csvUrl: (workspaceId: string, period: string) =>
    `/api/v1/billing/bills/${encodeURIComponent(period)}/csv?workspace_id=${encodeURIComponent(workspaceId)}`,
}

/** 123456 → "1234.56" (minor units, two decimals; never through a float for the cents). */
export function money(minor: number): string {
  const sign = minor < 0 ? '-' : ''
  const abs = Math.abs(minor)
  return `${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, '0')}`
}

/** "12.34" → 1234; null when it is not an amount with at most two decimals. */
export function parseMoney(text: string): number | null {
  const m = /^\s*(-?)(\d+)(?:\.(\d{1,2}))?\s*$/.exec(text)
  if (!m) return null
  const cents = Number(m[2]) * 100 + Number((m[3] ?? '').padEnd(2, '0'))
  return m[1] === '-' ? -cents : cents
}
