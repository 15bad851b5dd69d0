/** The signed-in user's notifications: inbox, read marks, preferences. */
import { http } from './client'

export type NotificationCategory = 'environment' | 'billing' | 'alert' | 'security' | 'support' | 'system'
export type NotificationChannel = 'in_app' | 'email' | 'sms'

export interface AppNotification {
  id: string
  kind: string
  category: NotificationCategory
  severity: 'info' | 'warning' | 'critical'
  title: string
  body: string
  link: string | null
  created_at: string
  read_at: string | null
}

export interface Inbox {
  items: AppNotification[]
  total: number
  unread: number
}

export interface ChannelSwitches { in_app: boolean; email: boolean; sms?: boolean }

export interface NotificationPreferences {
  locale: 'en' | 'zh-CN'
  timezone: string
  quiet_hours: { start: string; end: string } | null
  categories: Record<string, ChannelSwitches>
  always_on?: string[]
  channels?: NotificationChannel[]
  /** Info-level emails of these categories come batched: one digest per period. */
  digest?: { categories: NotificationCategory[]; period: 'hourly' | 'daily' }
}

export const CATEGORIES: NotificationCategory[] = ['environment', 'billing', 'alert', 'security', 'support', 'system']

export const notificationApi = {
  inbox: (opts: { unread?: boolean; limit?: number; offset?: number } = {}) =>
    http.get<Inbox>('/api/v1/notifications', { query: { limit: opts.limit ?? 50, offset: opts.offset ?? 0, unread: opts.unread ? 'true' : undefined } }),
  unread: () => http.get<Inbox>('/api/v1/notifications', { query: { limit: 1, unread: 'true' }, quiet: true }),
  read: (id: string) => http.post<void>(`/api/v1/notifications/${encodeURIComponent(id)}/read`),
  readAll: () => http.post<{ marked: number; unread: number }>('/api/v1/notifications/read-all'),
  preferences: () => http.get<NotificationPreferences>('/api/v1/users/me/notification-preferences'),
  savePreferences: (p: NotificationPreferences) =>
    http.put<NotificationPreferences>('/api/v1/users/me/notification-preferences', {
      locale: p.locale, timezone: p.timezone, quiet_hours: p.quiet_hours, categories: p.categories,
      ...(p.digest ? { digest: p.digest } : {}),
    }),
}
