/** Webhook endpoints of a workspace and their delivery log (workspace admins). */
import { http } from './client'
import type { Page } from './types'

export interface WebhookEndpoint {
  id: string
  workspace_id: string
  url: string
  description: string
  event_types: string[]
  enabled: boolean
  disabled_reason: string
  failing_since: string | null
  previous_secret_expires_at: string | null
  created_at: string
  updated_at: string
}

/** Only the answers to create and rotate-secret carry the secret, once. */
export interface WebhookEndpointWithSecret extends WebhookEndpoint {
  secret: string
}

export interface WebhookEventType {
  type: string
  description: string
}

export type DeliveryStatus = 'pending' | 'succeeded' | 'failed'

export interface WebhookDelivery {
  id: string
  endpoint_id: string
  message_id: string
  event_type: string
  status: DeliveryStatus
  attempts: number
  next_attempt_at: string | null
  created_at: string
  last_attempt_at: string | null
  request_body: string
  response_status: number | null
  response_body: string
  error: string
}

export interface WebhookInput {
  url: string
  description: string
  event_types: string[]
  enabled: boolean
}

const enc = encodeURIComponent
const ONE = (id: string) => `/api/v1/webhooks/${enc(id)}`

export const webhookApi = {
  eventTypes: () => http.get<Page<WebhookEventType>>('/api/v1/webhooks/event-types'),
  list: (workspaceId: string) => http.get<Page<WebhookEndpoint>>('/api/v1/webhooks', { query: { workspace_id: workspaceId } }),
  create: (workspaceId: string, body: WebhookInput) =>
    http.post<WebhookEndpointWithSecret>('/api/v1/webhooks', { workspace_id: workspaceId, ...body }),
  update: (id: string, body: Partial<WebhookInput>) => http.patch<WebhookEndpoint>(ONE(id), body),
  remove: (id: string) => http.delete<void>(ONE(id)),
  rotateSecret: (id: string) => http.post<WebhookEndpointWithSecret>(`${ONE(id)}/rotate-secret`),
  test: (id: string) => http.post<WebhookDelivery>(`${ONE(id)}/test`),
  deliveries: (id: string, limit = 50, offset = 0) =>
    http.get<Page<WebhookDelivery>>(`${ONE(id)}/deliveries`, { query: { limit, offset } }),
  redeliver: (id: string, deliveryId: string) => http.post<WebhookDelivery>(`${ONE(id)}/deliveries/${enc(deliveryId)}/redeliver`),
  replay: (id: string, since: string, until: string, onlyFailed = true) =>
    http.post<{ queued: number; skipped: number; truncated: boolean }>(`${ONE(id)}/replay`, { since, until, only_failed: onlyFailed }),
}
