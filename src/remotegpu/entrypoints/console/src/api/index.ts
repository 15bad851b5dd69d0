/** Typed endpoint functions over the client. */
import { http, type RequestOptions } from './client'
import type {
  ApiToken, ApiTokenCreated, AuditEvent, SshSession, CapacityQuery, EnvAccess, EnvEvent, Environment, EnvironmentCreate, GpuType, Host, HostCreated, HostToken,
  Invitation, Invite, Member, Page, Quota, Role, SshKey, BrowserSession, User, UserQuota, Workspace,
} from './types'

export * from './client'
export * from './types'

const enc = encodeURIComponent

export const authApi = {
  /** Console login: the server sets httpOnly cookies; the answer holds the CSRF token, never a token. */
  login: (username: string, password: string) =>
    http.post<BrowserSession>('/api/v1/auth/session', { username, password }, { auth: false }),
  register: (body: { username: string; email: string; password: string; display_name?: string; invite_code?: string | null }) =>
    http.post<User>('/api/v1/auth/register', body, { auth: false }),
  /** The cookie session's CSRF token and user (after a reload); 401 without a session. */
  session: () => http.get<BrowserSession>('/api/v1/auth/session', { auth: false, quiet: true }),
  refreshSession: () => http.post<BrowserSession>('/api/v1/auth/session/refresh', undefined, { auth: false, quiet: true }),
  logout: () => http.delete<void>('/api/v1/auth/session', { auth: false, quiet: true }),
  /** How people sign in here: local passwords, the organisation's LDAP directory, or both. */
  signInOptions: () => http.get<{ local_passwords: boolean; ldap: boolean; oidc?: string | null }>('/api/v1/auth/providers', { auth: false, quiet: true }),
}

export const meApi = {
  get: (opts?: RequestOptions) => http.get<User>('/api/v1/users/me', opts),
  update: (display_name: string) => http.patch<User>('/api/v1/users/me', { display_name }),
  changePassword: (current_password: string, new_password: string) =>
    http.post<void>('/api/v1/users/me/password', { current_password, new_password }),
  sshKeys: () => http.get<Page<SshKey>>('/api/v1/users/me/ssh-keys', { query: { limit: 200 } }),
  addSshKey: (public_key: string, name?: string) =>
    http.post<SshKey>('/api/v1/users/me/ssh-keys', { public_key, name: name || null }),
  deleteSshKey: (id: string) => http.delete<void>(`/api/v1/users/me/ssh-keys/${enc(id)}`),
  tokens: () => http.get<Page<ApiToken>>('/api/v1/users/me/tokens', { query: { limit: 200 } }),
  createToken: (name: string, expires_in_days: number | null) =>
    http.post<ApiTokenCreated>('/api/v1/users/me/tokens', { name, expires_in_days }),
  revokeToken: (id: string) => http.delete<void>(`/api/v1/users/me/tokens/${enc(id)}`),
}

export const workspaceApi = {
  list: () => http.get<Page<Workspace>>('/api/v1/workspaces', { query: { limit: 200 } }),
  get: (id: string, opts?: RequestOptions) => http.get<Workspace>(`/api/v1/workspaces/${enc(id)}`, opts),
  create: (name: string) => http.post<Workspace>('/api/v1/workspaces', { name }),
  rename: (id: string, name: string) => http.patch<Workspace>(`/api/v1/workspaces/${enc(id)}`, { name }),
  remove: (id: string) => http.delete<void>(`/api/v1/workspaces/${enc(id)}`),
  members: (id: string) => http.get<Page<Member>>(`/api/v1/workspaces/${enc(id)}/members`, { query: { limit: 200 } }),
  addMember: (id: string, username: string, role: Role) =>
    http.post<Member>(`/api/v1/workspaces/${enc(id)}/members`, { username, role }),
  setRole: (id: string, userId: string, role: Role) =>
    http.patch<Member>(`/api/v1/workspaces/${enc(id)}/members/${enc(userId)}`, { role }),
  removeMember: (id: string, userId: string) => http.delete<void>(`/api/v1/workspaces/${enc(id)}/members/${enc(userId)}`),
  quota: (id: string, opts?: RequestOptions) => http.get<Quota>(`/api/v1/workspaces/${enc(id)}/quota`, opts),
  setQuota: (id: string, q: Omit<Quota, 'usage' | 'is_default'>) => http.put<Quota>(`/api/v1/workspaces/${enc(id)}/quota`, q),
  resetQuota: (id: string) => http.delete<Quota>(`/api/v1/workspaces/${enc(id)}/quota`),
  /** Members join by accepting: owners and admins invite by username or email. */
  invite: (id: string, who: { username?: string; email?: string }, role: Role) =>
    http.post<Invitation>(`/api/v1/workspaces/${enc(id)}/invitations`, { ...who, role }),
  invitations: (id: string) => http.get<Page<Invitation>>(`/api/v1/workspaces/${enc(id)}/invitations`),
  revokeInvitation: (id: string, invitationId: string) =>
    http.delete<void>(`/api/v1/workspaces/${enc(id)}/invitations/${enc(invitationId)}`),
  myInvitations: (opts?: RequestOptions) => http.get<Page<Invitation>>('/api/v1/users/me/invitations', opts),
  accept: (invitationId: string) => http.post<Workspace>(`/api/v1/users/me/invitations/${enc(invitationId)}/accept`),
  decline: (invitationId: string) => http.post<void>(`/api/v1/users/me/invitations/${enc(invitationId)}/decline`),
}

export const adminApi = {
  users: (search: string, limit: number, offset: number) =>
    http.get<Page<User>>('/api/v1/users', { query: { search, limit, offset } }),
  /** Every workspace on the platform (platform admins; others get 403). */
  workspaces: (search: string, limit: number, offset: number) =>
    http.get<Page<Workspace>>('/api/v1/workspaces', { query: { all: true, search, limit, offset } }),
  patchUser: (id: string, patch: { is_active?: boolean; is_admin?: boolean }) =>
    http.patch<User>(`/api/v1/users/${enc(id)}`, patch),
  audit: (q: { limit: number; offset: number; action?: string; actor_id?: string }) =>
    http.get<Page<AuditEvent>>('/api/v1/audit-events', { query: q }),
  /** Stays in environments through the SSH gateway, newest first (platform admins). */
  sshSessions: (q: { limit: number; offset: number; workspace_id?: string; environment_id?: string; user_id?: string }) =>
    http.get<Page<SshSession>>('/api/v1/ssh-sessions', { query: q }),
  /** A recorded session's asciicast v2 file (platform admins). */
  sshSessionRecording: (id: string) => http.get<string>(`/api/v1/ssh-sessions/${enc(id)}/recording`, { raw: true }),
  createInvite: (valid_days: number) => http.post<Invite>('/api/v1/invites', { valid_days }),
  hosts: (opts?: RequestOptions) => http.get<Page<Host>>('/api/v1/hosts', { query: { limit: 200 }, ...opts }),
  createHost: (name: string, address: string, allowLoopback = false) =>
    http.post<HostCreated>('/api/v1/hosts', { name, address: address || undefined, allow_loopback: allowLoopback || undefined }),
  setOvercommit: (id: string, ratios: { cpu_overcommit?: number; memory_overcommit?: number }) =>
    http.patch<Host>(`/api/v1/hosts/${enc(id)}`, ratios),
  hostAction: (id: string, action: 'cordon' | 'uncordon' | 'drain') => http.post<Host>(`/api/v1/hosts/${enc(id)}/${action}`),
  /** New one-time join token; the agent's current token stops working at once. */
  rotateHostToken: (id: string) => http.post<HostToken>(`/api/v1/hosts/${enc(id)}/token`),
  /** force: also while the host is online with environments (they turn lost). */
  removeHost: (id: string, force = false) => http.delete<void>(`/api/v1/hosts/${enc(id)}`, { query: force ? { force: true } : undefined }),
  userQuota: (userId: string) => http.get<UserQuota>(`/api/v1/users/${enc(userId)}/quota`),
  setUserQuota: (userId: string, q: Omit<UserQuota, 'usage' | 'user_id' | 'username' | 'owned_workspaces' | 'is_default'>) =>
    http.put<UserQuota>(`/api/v1/users/${enc(userId)}/quota`, q),
  resetUserQuota: (userId: string) => http.delete<UserQuota>(`/api/v1/users/${enc(userId)}/quota`),
}

export const gpuApi = {
  /** With ``request``: each model also says whether that request would start now. */
  types: (opts?: RequestOptions, request?: CapacityQuery) =>
    http.get<Page<GpuType> | { items: GpuType[] }>('/api/v1/gpu-types', request ? { ...opts, query: { ...request } } : opts),
}

export type EnvAction = 'start' | 'stop' | 'restart'

export const envApi = {
  list: (opts?: RequestOptions) => http.get<Page<Environment>>('/api/v1/environments', { query: { limit: 200 }, ...opts }),
  get: (id: string, opts?: RequestOptions) => http.get<Environment>(`/api/v1/environments/${enc(id)}`, opts),
  create: (body: EnvironmentCreate) => http.post<Environment>('/api/v1/environments', body),
  action: (id: string, action: EnvAction, body?: { gpu?: boolean }) =>
    http.post<Environment>(`/api/v1/environments/${enc(id)}/${action}`, body ?? {}),
  remove: (id: string, opts?: RequestOptions) => http.delete<Environment | void>(`/api/v1/environments/${enc(id)}`, opts),
  events: (id: string, opts?: RequestOptions) =>
    http.get<Page<EnvEvent> | { items: EnvEvent[] }>(`/api/v1/environments/${enc(id)}/events`, opts),
  access: (id: string, opts?: RequestOptions) => http.get<EnvAccess>(`/api/v1/environments/${enc(id)}/access`, opts),
}
