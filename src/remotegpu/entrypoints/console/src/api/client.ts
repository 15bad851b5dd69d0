/**
 * The one HTTP client of the console.
 *
 * Everything goes through `request()`: it sends the session cookies (same origin only; the
 * console never holds a token) and the CSRF header, turns
 * every non-2xx answer into an `ApiError`, and is the ONE place that handles
 * 401 → refresh (single-flight, owned by the auth store) → retry once, and that shows
 * errors to the user (through the notifier installed by main.ts, ElMessage in the app).
 */
import type { ErrorBody } from './types'

export class ApiError extends Error {
  readonly status: number
  readonly code: string
  readonly details: Record<string, unknown>
  readonly requestId: string | null

  constructor(status: number, body: ErrorBody, requestId: string | null = null) {
    super(body.message || body.code)
    this.name = 'ApiError'
    this.status = status
    this.code = body.code
    this.details = body.details ?? {}
    this.requestId = requestId
  }

  /** A 404 from a route the server does not have (yet): the feature is not deployed. */
  get isMissingRoute(): boolean {
    return this.status === 404 && (this.code === 'not_found' || this.code === 'http_error') && this.message === 'no such resource'
  }
}

export interface AuthHooks {
  getCsrfToken(): string | null
  /** Refresh the session; resolves true when the session cookie was renewed. Single-flight. */
  refresh(): Promise<boolean>
  /** The session is gone (refresh failed): forget it and go to the login page. */
  onAuthLost(): void
}

export type Translate = (key: string, params?: Record<string, unknown>) => string | null

interface ClientConfig {
  baseUrl: string
  auth: AuthHooks | null
  notify: (message: string) => void
  translate: Translate
  fetch: typeof fetch
}

const config: ClientConfig = {
  baseUrl: '',
  auth: null,
  notify: () => {},
  translate: () => null,
  fetch: (...args) => globalThis.fetch(...args),
}

export function configureClient(partial: Partial<ClientConfig>): void {
  Object.assign(config, partial)
}

export interface RequestOptions {
  body?: unknown
  query?: Record<string, string | number | boolean | null | undefined>
  /** Refresh the session on 401 and retry (default true). */
  auth?: boolean
  /** Do not show the error to the user: true for all, or a list of statuses to keep quiet. */
  quiet?: boolean | number[]
  signal?: AbortSignal
  /** The body as text, not parsed as JSON (e.g. an asciicast recording). */
  raw?: boolean
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])
const READ_RETRY_MS = [150, 600]

export function buildUrl(path: string, query?: RequestOptions['query']): string {
  let url = config.baseUrl + path
  if (query) {
    const params = new URLSearchParams()
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== '') params.set(k, String(v))
    }
    const qs = params.toString()
    if (qs) url += (url.includes('?') ? '&' : '?') + qs
  }
  return url
}

async function toApiError(resp: Response): Promise<ApiError> {
  const requestId = resp.headers.get('X-Request-ID')
  let body: ErrorBody = { code: `http_${resp.status}`, message: resp.statusText || `HTTP ${resp.status}` }
  try {
    const data = await resp.json()
    if (data && typeof data === 'object' && data.error && typeof data.error.code === 'string') {
      body = data.error
    }
  } catch {
    /* not JSON: keep the status line */
  }
  return new ApiError(resp.status, body, requestId)
}

async function send(method: string, path: string, opts: RequestOptions): Promise<Response> {
  const headers: Record<string, string> = { Accept: 'application/json' }
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json'
  if (!SAFE_METHODS.has(method)) {
    const csrf = config.auth?.getCsrfToken()
    if (csrf) headers['X-CSRF-Token'] = csrf
  }
  // A read whose connection dropped is asked again (a moment later, twice at most): a
  // browser aborts requests in flight when the machine's network interfaces change.
  // Writes are not repeated: the first may have taken effect.
  const waits = SAFE_METHODS.has(method) ? [...READ_RETRY_MS] : []
  for (;;) {
    try {
      return await config.fetch(buildUrl(path, opts.query), {
        method,
        headers,
        body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
        credentials: 'same-origin',
        signal: opts.signal,
      })
    } catch (err) {
      if ((err as Error)?.name === 'AbortError') throw err
      const wait = waits.shift()
      if (wait === undefined) throw new ApiError(0, { code: 'network_error', message: 'The server cannot be reached.' })
      await new Promise((resolve) => setTimeout(resolve, wait))
    }
  }
}

function isQuiet(err: ApiError, quiet: RequestOptions['quiet']): boolean {
  if (quiet === true) return true
  if (Array.isArray(quiet)) return quiet.includes(err.status)
  return false
}

/** Codes whose translation is generic: the server's own sentence is appended for the specifics. */
const GENERIC_CODES = new Set([
  'conflict', 'not_found', 'permission_denied', 'invalid_state', 'invalid_transition', 'invalid_input', 'http_error', 'internal_error',
])

/** A readable, translated sentence for an error (shown by ElMessage). */
export function describeError(err: unknown, translate: Translate = config.translate): string {
  if (err instanceof ApiError) {
    const d = err.details
    const params: Record<string, unknown> = { ...d, message: err.message }
    const known = translate(`errors.${err.code}`, params)
    if (Array.isArray(d.errors) && d.errors.length) {
      // pydantic-style details: name the fields the server complained about.
      const list = d.errors as Array<{ loc?: unknown[]; msg?: string }>
      const fields = list.map((e) => `${(e.loc ?? []).filter((p) => p !== 'body' && p !== 'query').join('.')}: ${e.msg ?? ''}`)
      return `${known ?? translate('errors.validation_error') ?? 'Invalid input'}: ${fields.join('; ')}`
    }
    if (err.code === 'quota_exceeded' && Array.isArray(d.violations) && d.violations.length) {
      const parts = (d.violations as Array<Record<string, unknown>>).map((v) => {
        const resource = translate(`ws.usage.${String(v.resource)}`) ?? String(v.resource)
        return translate('errors.quotaViolation', { ...v, resource }) ?? `${resource}: ${v.used} + ${v.requested} > ${v.limit}`
      })
      // scope "user": an owner's cap across all their workspaces, not this workspace's quota.
      const head = d.scope === 'user' ? translate('errors.userQuotaExceeded', params) ?? known : known
      return `${head ?? err.message} ${parts.join('; ')}`
    }
    if (known && GENERIC_CODES.has(err.code) && err.message && err.message !== 'no such resource') {
      return `${known} ${err.message}`
    }
    if (known) return known
    if (err.message) return err.message
    return translate('errors.unknown') ?? `HTTP ${err.status}`
  }
  if (err instanceof Error && err.message) return err.message
  return translate('errors.unknown') ?? 'Something went wrong.'
}

export async function request<T = unknown>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
  let resp = await send(method, path, opts).catch((err) => {
    if (err instanceof ApiError && !isQuiet(err, opts.quiet)) config.notify(describeError(err))
    throw err
  })
  if (resp.status === 401 && opts.auth !== false && config.auth) {
    let refreshed = false
    try {
      refreshed = await config.auth.refresh()
    } catch (err) {
      if (err instanceof ApiError && !isQuiet(err, opts.quiet)) config.notify(describeError(err))
      throw err
    }
    if (refreshed) {
      resp = await send(method, path, opts)
    }
    if (!refreshed || resp.status === 401) {
      const err = await toApiError(resp)
      config.auth.onAuthLost()
      if (!isQuiet(err, opts.quiet)) config.notify(describeError(err))
      throw err
    }
  }
  if (!resp.ok) {
    const err = await toApiError(resp)
    if (!isQuiet(err, opts.quiet)) config.notify(describeError(err))
    throw err
  }
  if (resp.status === 204) return undefined as T
  const text = await resp.text()
  if (opts.raw) return text as T
  return (text ? JSON.parse(text) : undefined) as T
}

export const http = {
  get: <T>(path: string, opts?: RequestOptions) => request<T>('GET', path, opts),
  post: <T>(path: string, body?: unknown, opts?: RequestOptions) => request<T>('POST', path, { ...opts, body: body ?? {} }),
  put: <T>(path: string, body?: unknown, opts?: RequestOptions) => request<T>('PUT', path, { ...opts, body: body ?? {} }),
  patch: <T>(path: string, body?: unknown, opts?: RequestOptions) => request<T>('PATCH', path, { ...opts, body: body ?? {} }),
  delete: <T>(path: string, opts?: RequestOptions) => request<T>('DELETE', path, opts),
}
