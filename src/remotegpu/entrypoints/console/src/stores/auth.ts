/**
 * The session. The console never holds a token: the server keeps the session in httpOnly
 * cookies (access, and a refresh cookie scoped to /api/v1/auth/session), and nothing is
 * written to localStorage or sessionStorage — a page of another origin (an environment's
 * JupyterLab, whose every byte its owner controls) has nothing to read. What the console
 * keeps, in memory only, is the CSRF token it sends on state-changing requests; after a
 * reload it asks for it again (GET /api/v1/auth/session, readable by this origin only).
 *
 * Refresh tokens rotate on every use and reusing an old one revokes the whole family, so
 * refreshes are serialized: one in flight per tab (a shared promise), and across tabs with
 * the Web Locks API where the browser has it (the cookies are shared: a tab that waited for
 * the lock first asks whether the other tab's refresh already renewed the session).
 */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { ApiError, authApi, type BrowserSession, type User } from '../api'

const LOCK_NAME = 'rgpu-refresh'
/** Refresh this long before the access cookie expires. */
const REFRESH_MARGIN_MS = 60_000

async function withRefreshLock<T>(fn: () => Promise<T>): Promise<T> {
  const locks = (globalThis.navigator as Navigator | undefined)?.locks
  if (locks?.request) return locks.request(LOCK_NAME, fn) as Promise<T>
  return fn()
}

/** Where a login may send the browser with a full page load: the handshake that opens an environment's app. */
export function isAppAuthorizePath(path: unknown): boolean {
  return typeof path === 'string' && /^\/api\/v1\/environments\/[0-9a-f-]{36}\/apps\/[a-z]+\/authorize(\?|$)/.test(path)
}

export const useAuthStore = defineStore('auth', () => {
  const csrfToken = ref<string | null>(null)
  const expiresAt = ref<number>(0)
  const user = ref<User | null>(null)

  const isLoggedIn = computed(() => !!user.value)
  const isAdmin = computed(() => !!user.value?.is_admin)

  let inflight: Promise<boolean> | null = null
  let restoring: Promise<User | null> | null = null
  let timer: ReturnType<typeof setTimeout> | null = null
  let autoRefresh = typeof window !== 'undefined' && !import.meta.env?.VITEST

  function adopt(s: BrowserSession): void {
    csrfToken.value = s.csrf_token
    expiresAt.value = Date.now() + s.expires_in * 1000
    if (s.user) user.value = s.user
    schedule()
  }

  function clear(): void {
    csrfToken.value = null
    expiresAt.value = 0
    user.value = null
    if (timer) clearTimeout(timer)
    timer = null
  }

  /** Keep the session alive: refresh shortly before the access cookie expires. */
  function schedule(): void {
    if (timer) clearTimeout(timer)
    timer = null
    if (!autoRefresh || !expiresAt.value) return
    const delay = Math.max(5_000, expiresAt.value - Date.now() - REFRESH_MARGIN_MS)
    timer = setTimeout(() => {
      refresh().catch(() => {})
    }, delay)
  }

  /** The session the cookies hold now, or null (none, or expired). */
  async function current(): Promise<BrowserSession | null> {
    try {
      return await authApi.session()
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return null
      throw err
    }
  }

  async function doRefresh(): Promise<boolean> {
    return withRefreshLock(async () => {
      // Another tab may have renewed the (shared) cookies while we waited for the lock.
      const now = await current()
      if (now && now.expires_in * 1000 > REFRESH_MARGIN_MS) {
        adopt(now)
        return true
      }
      try {
        adopt(await authApi.refreshSession())
        return true
      } catch (err) {
        if (err instanceof ApiError && err.status !== 0 && err.status < 500) {
          clear()
          return false
        }
        throw err
      }
    })
  }

  /** Single-flight: concurrent callers share one refresh request. */
  function refresh(): Promise<boolean> {
    if (!inflight) {
      inflight = doRefresh().finally(() => {
        inflight = null
      })
    }
    return inflight
  }

  async function login(username: string, password: string): Promise<User> {
    adopt(await authApi.login(username, password))
    return user.value!
  }

  async function register(body: { username: string; email: string; password: string; display_name?: string; invite_code?: string | null }): Promise<User> {
    await authApi.register(body)
    return login(body.username, body.password)
  }

  async function fetchUser(): Promise<User> {
    const s = await authApi.session()
    adopt(s)
    return s.user
  }

  /** For the router guard: the user of the cookie session (after a reload: asked for, refreshed if need be); null when none. */
  async function ensureUser(): Promise<User | null> {
    if (user.value) return user.value
    if (!restoring) {
      restoring = (async () => {
        try {
          const s = await current()
          if (s) {
            adopt(s)
            return s.user
          }
          return (await refresh()) ? user.value : null
        } catch {
          return null
        } finally {
          restoring = null
        }
      })()
    }
    return restoring
  }

  /** Ends the platform session; true when the browser must go on to the identity provider's logout (a session from OIDC). */
  async function logout(): Promise<boolean> {
    const sso = user.value?.auth_source === 'oidc'
    clear()
    await authApi.logout().catch(() => {})
    return sso
  }

  function setAutoRefresh(on: boolean): void {
    autoRefresh = on
    schedule()
  }

  return {
    csrfToken, expiresAt, user, isLoggedIn, isAdmin,
    adopt, clear, refresh, login, register, logout, fetchUser, ensureUser, setAutoRefresh,
  }
})
