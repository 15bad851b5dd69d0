/**
 * The session: tokens in localStorage (until the httpOnly cookie lands), the current user,
 * and the refresh logic. Refresh tokens rotate on every use and reusing an old one revokes
 * the whole family, so refreshes are serialized: one in flight per tab (a shared promise),
 * and across tabs with the Web Locks API where the browser has it (a tab that waited for the
 * lock adopts the pair the other tab stored instead of spending the old token again).
 */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { ApiError, authApi, meApi, type TokenPair, type User } from '../api'

export const STORAGE_KEY = 'rgpu.session'
const LOCK_NAME = 'rgpu-refresh'
/** Refresh this long before the access token expires. */
const REFRESH_MARGIN_MS = 60_000

interface StoredSession {
  accessToken: string
  refreshToken: string
  csrfToken: string | null
  expiresAt: number
}

function readStored(): StoredSession | null {
  try {
    const raw = localStorage.getItem(STORAGE_KEY)
    if (!raw) return null
    const s = JSON.parse(raw)
    if (typeof s?.accessToken === 'string' && typeof s?.refreshToken === 'string') return s as StoredSession
  } catch {
    /* corrupted: ignore */
  }
  return null
}

async function withRefreshLock<T>(fn: () => Promise<T>): Promise<T> {
  const locks = (globalThis.navigator as Navigator | undefined)?.locks
  if (locks?.request) return locks.request(LOCK_NAME, fn) as Promise<T>
  return fn()
}

export const useAuthStore = defineStore('auth', () => {
  const stored = readStored()
  const accessToken = ref<string | null>(stored?.accessToken ?? null)
  const refreshToken = ref<string | null>(stored?.refreshToken ?? null)
  const csrfToken = ref<string | null>(stored?.csrfToken ?? null)
  const expiresAt = ref<number>(stored?.expiresAt ?? 0)
  const user = ref<User | null>(null)

  const isLoggedIn = computed(() => !!refreshToken.value)
  const isAdmin = computed(() => !!user.value?.is_admin)

  let inflight: Promise<boolean> | null = null
  let timer: ReturnType<typeof setTimeout> | null = null
  let autoRefresh = typeof window !== 'undefined' && !import.meta.env?.VITEST

  function persist(): void {
    if (refreshToken.value && accessToken.value) {
      const s: StoredSession = {
        accessToken: accessToken.value,
        refreshToken: refreshToken.value,
        csrfToken: csrfToken.value,
        expiresAt: expiresAt.value,
      }
      localStorage.setItem(STORAGE_KEY, JSON.stringify(s))
    } else {
      localStorage.removeItem(STORAGE_KEY)
    }
  }

  function adopt(s: StoredSession | null): void {
    accessToken.value = s?.accessToken ?? null
    refreshToken.value = s?.refreshToken ?? null
    csrfToken.value = s?.csrfToken ?? null
    expiresAt.value = s?.expiresAt ?? 0
    schedule()
  }

  function setTokens(pair: TokenPair): void {
    accessToken.value = pair.access_token
    refreshToken.value = pair.refresh_token
    if (pair.csrf_token !== undefined) csrfToken.value = pair.csrf_token || null
    expiresAt.value = Date.now() + pair.expires_in * 1000
    persist()
    schedule()
  }

  function clear(): void {
    accessToken.value = null
    refreshToken.value = null
    csrfToken.value = null
    expiresAt.value = 0
    user.value = null
    if (timer) clearTimeout(timer)
    timer = null
    persist()
  }

  /** Keep the session alive: refresh shortly before the access token expires. */
  function schedule(): void {
    if (timer) clearTimeout(timer)
    timer = null
    if (!autoRefresh || !refreshToken.value || !expiresAt.value) return
    const delay = Math.max(5_000, expiresAt.value - Date.now() - REFRESH_MARGIN_MS)
    timer = setTimeout(() => {
      refresh().catch(() => {})
    }, delay)
  }

  async function doRefresh(): Promise<boolean> {
    const spent = refreshToken.value
    if (!spent) return false
    return withRefreshLock(async () => {
      // Another tab may have rotated the pair while we waited for the lock.
      const latest = readStored()
      if (latest && latest.refreshToken !== spent) {
        adopt(latest)
        return true
      }
      try {
        setTokens(await authApi.refresh(spent))
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
    setTokens(await authApi.login(username, password))
    return fetchUser()
  }

  async function register(body: { username: string; email: string; password: string; display_name?: string; invite_code?: string | null }): Promise<User> {
    await authApi.register(body)
    return login(body.username, body.password)
  }

  async function fetchUser(): Promise<User> {
    user.value = await meApi.get()
    return user.value
  }

  /** For the router guard: the user, loading it once; null when not logged in. */
  async function ensureUser(): Promise<User | null> {
    if (!isLoggedIn.value) return null
    if (user.value) return user.value
    try {
      return await fetchUser()
    } catch {
      return isLoggedIn.value ? user.value : null
    }
  }

  async function logout(): Promise<void> {
    const token = refreshToken.value
    clear()
    if (token) await authApi.logout(token).catch(() => {})
  }

  /** Keep tabs in step: another tab logged in, refreshed or logged out. */
  function onStorage(e: StorageEvent): void {
    if (e.key !== STORAGE_KEY) return
    const s = readStored()
    adopt(s)
    if (!s) user.value = null
  }
  if (typeof window !== 'undefined') window.addEventListener('storage', onStorage)
  schedule()

  function setAutoRefresh(on: boolean): void {
    autoRefresh = on
    schedule()
  }

  return {
    accessToken, refreshToken, csrfToken, expiresAt, user, isLoggedIn, isAdmin,
    setTokens, clear, refresh, login, register, logout, fetchUser, ensureUser, setAutoRefresh,
  }
})
