/** Support tickets (requesters and the support team). */
import { ApiError, http } from './client'
import type { Page } from './types'

export type TicketStatus = 'new' | 'open' | 'pending' | 'on_hold' | 'solved' | 'closed'
export type TicketPriority = 'low' | 'normal' | 'high' | 'urgent'
export type TicketCategory = 'environment' | 'billing' | 'account' | 'bug' | 'question' | 'other'

export const STATUSES: TicketStatus[] = ['new', 'open', 'pending', 'on_hold', 'solved', 'closed']
export const PRIORITIES: TicketPriority[] = ['low', 'normal', 'high', 'urgent']
export const CATEGORIES: TicketCategory[] = ['environment', 'billing', 'account', 'bug', 'question', 'other']

export interface Ticket {
  id: string
  requester_id: string
  subject: string
  description: string
  category: TicketCategory
  priority: TicketPriority
  status: TicketStatus
  workspace_id: string | null
  environment_id: string | null
  assignee_id: string | null
  created_at: string
  updated_at: string
  first_response_at: string | null
  solved_at: string | null
  closed_at: string | null
  sla_breached: string[]
}

export interface TicketComment {
  id: string
  ticket_id: string
  author_id: string
  author: string
  body: string
  internal: boolean
  by_staff: boolean
  created_at: string
}

export interface SlaTarget {
  name: 'first_response' | 'resolution'
  target_seconds: number
  elapsed_seconds: number
  done_at: string | null
  due_at: string | null
  breached: boolean
  paused: boolean
}

export interface TicketAttachment {
  id: string
  ticket_id: string
  comment_id: string | null
  uploader_id: string
  filename: string
  content_type: string
  size: number
  sha256: string
  internal: boolean
  created_at: string
}

/** What the server accepts (others: 422 attachment_type); a file's type from its name when the browser has none. */
export const ATTACHMENT_TYPES: Record<string, string> = {
  png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp', txt: 'text/plain',
  log: 'text/plain', csv: 'text/csv', md: 'text/markdown', json: 'application/json', pdf: 'application/pdf',
  zip: 'application/zip', gz: 'application/gzip', tgz: 'application/gzip', tar: 'application/x-tar', yaml: 'application/yaml',
  yml: 'application/yaml',
}

export function attachmentType(file: File): string {
  if (file.type && Object.values(ATTACHMENT_TYPES).includes(file.type)) return file.type
  return ATTACHMENT_TYPES[file.name.split('.').pop()?.toLowerCase() ?? ''] ?? file.type ?? 'application/octet-stream'
}

/** Upload a file's bytes to a ticket (or to one of the caller's comments on it). */
export async function attachFile(ticketId: string, file: File, csrf: string | null, commentId?: string): Promise<TicketAttachment> {
  const query = new URLSearchParams({ filename: file.name, content_type: attachmentType(file), ...(commentId ? { comment_id: commentId } : {}) })
  const headers: Record<string, string> = { 'Content-Type': 'application/octet-stream' }
  if (csrf) headers['X-CSRF-Token'] = csrf
  const resp = await fetch(`${ONE(ticketId)}/attachments?${query}`, { method: 'POST', body: file, headers, credentials: 'same-origin' })
  if (!resp.ok) {
    let body = { code: `http_${resp.status}`, message: resp.statusText }
    try { body = (await resp.json()).error ?? body } catch { /* not JSON */ }
    throw new ApiError(resp.status, body)
  }
  return resp.json()
}

export const attachmentUrl = (ticketId: string, attachmentId: string): string =>
  `${ONE(ticketId)}/attachments/${encodeURIComponent(attachmentId)}`

export interface TicketDetail extends Ticket {
  requester: string
  assignee: string | null
  comments: TicketComment[]
  attachments: TicketAttachment[]
  sla: SlaTarget[]
  staff_view: boolean
  allowed_statuses: TicketStatus[]
}

export interface TicketInput {
  subject: string
  description: string
  category: TicketCategory
  priority: TicketPriority
  environment_id?: string
}

export interface TicketPatch {
  status?: TicketStatus
  priority?: TicketPriority
  category?: TicketCategory
  assignee_id?: string
  unassign?: boolean
}

const enc = encodeURIComponent
const ONE = (id: string) => `/api/v1/tickets/${enc(id)}`

export const supportApi = {
  me: () => http.get<{ is_staff: boolean; business_hours: string }>('/api/v1/support/me'),
  mine: (status?: string, limit = 50, offset = 0) =>
    http.get<Page<Ticket>>('/api/v1/tickets', { query: { limit, offset, ...(status ? { status } : {}) } }),
  queue: (filters: { status?: string; assignee?: string; priority?: string }, limit = 50, offset = 0) => {
    const query: Record<string, string | number> = { limit, offset }
    for (const [k, v] of Object.entries(filters)) if (v) query[k] = v
    return http.get<Page<Ticket>>('/api/v1/support/queue', { query })
  },
  create: (body: TicketInput) => http.post<Ticket>('/api/v1/tickets', body),
  get: (id: string) => http.get<TicketDetail>(ONE(id)),
  update: (id: string, body: TicketPatch) => http.patch<TicketDetail>(ONE(id), body),
  reply: (id: string, body: string, internal = false, status?: TicketStatus) =>
    http.post<TicketComment>(`${ONE(id)}/comments`, { body, internal, ...(status ? { status } : {}) }),
  solve: (id: string) => http.post<Ticket>(`${ONE(id)}/solve`),
  reopen: (id: string) => http.post<Ticket>(`${ONE(id)}/reopen`),
  agents: () => http.get<Page<{ id: string; username: string; display_name: string }>>('/api/v1/support/agents'),
  addAgent: (userId: string) => http.put<{ id: string; username: string }>(`/api/v1/support/agents/${enc(userId)}`),
  removeAgent: (userId: string) => http.delete<void>(`/api/v1/support/agents/${enc(userId)}`),
}
