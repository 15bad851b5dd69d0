import { beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { configureClient, http } from '../src/api/client'
import { STORAGE_KEY, useAuthStore } from '../src/stores/auth'
import { fakeFetch, json } from './helpers'

function seed(access: string, refresh: string) {
  localStorage.setItem(STORAGE_KEY, JSON.stringify({ accessToken: access, refreshToken: refresh, csrfToken: null, expiresAt: Date.now() + 60_000 }))
}

function wire(store: ReturnType<typeof useAuthStore>, onAuthLost = vi.fn()) {
  configureClient({
    notify: () => {},
    auth: {
      getAccessToken: () => store.accessToken,
      getCsrfToken: () => store.csrfToken,
      refresh: () => store.refresh(),
      onAuthLost,
    },
  })
  return onAuthLost
}

describe('auth store', () => {
  beforeEach(() => {
    localStorage.clear()
    setActivePinia(createPinia())
  })

  it('restores the session from localStorage and persists a login', async () => {
    const { fetch, calls } = fakeFetch((c) =>
      c.url.endsWith('/auth/login')
        ? json(200, { access_token: 'A1', refresh_token: 'R1', token_type: 'bearer', expires_in: 900, csrf_token: 'C1' })
        : json(200, { id: 'u1', username: 'alice', is_admin: false }),
    )
    configureClient({ fetch })
    const store = useAuthStore()
    wire(store)
    expect(store.isLoggedIn).toBe(false)
    await store.login('alice', 'pw')
    expect(store.user?.username).toBe('alice')
    expect(calls[1].headers.Authorization).toBe('Bearer A1')
    const saved = JSON.parse(localStorage.getItem(STORAGE_KEY)!)
    expect(saved).toMatchObject({ accessToken: 'A1', refreshToken: 'R1', csrfToken: 'C1' })

    setActivePinia(createPinia())
    const again = useAuthStore()
    expect(again.isLoggedIn).toBe(true)
    expect(again.accessToken).toBe('A1')
    expect(again.csrfToken).toBe('C1')
  })

  it('single-flight: concurrent 401s share ONE refresh, and every request is retried with the new token', async () => {
    seed('expired', 'R0')
    let refreshes = 0
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const { fetch, calls } = fakeFetch(async (c) => {
      if (c.url.endsWith('/auth/refresh')) {
        refreshes += 1
        await gate
        const n = refreshes
        return json(200, { access_token: `A${n}`, refresh_token: `R${n}`, expires_in: 900 })
      }
      return c.headers.Authorization === 'Bearer A1' ? json(200, { url: c.url }) : json(401, { error: { code: 'unauthenticated', message: 'expired' } })
    })
    configureClient({ fetch })
    const store = useAuthStore()
    wire(store)
    const pending = [http.get('/api/v1/a'), http.get('/api/v1/b'), http.get('/api/v1/c')]
    await new Promise((r) => setTimeout(r, 10))
    release()
    const results = await Promise.all(pending)
    expect(results.map((r: any) => r.url)).toEqual(['/api/v1/a', '/api/v1/b', '/api/v1/c'])
    expect(refreshes).toBe(1)
    expect(calls.filter((c) => c.url.endsWith('/auth/refresh'))).toHaveLength(1)
    expect(store.refreshToken).toBe('R1')
    // A later expiry refreshes again, with the rotated token.
    expect(await store.refresh()).toBe(true)
    expect(refreshes).toBe(2)
    expect(calls.filter((c) => c.url.endsWith('/auth/refresh')).map((c) => c.body)).toEqual([{ refresh_token: 'R0' }, { refresh_token: 'R1' }])
  })

  it('a failed refresh clears the session and reports it lost', async () => {
    seed('expired', 'R0')
    const { fetch } = fakeFetch((c) =>
      c.url.endsWith('/auth/refresh')
        ? json(401, { error: { code: 'refresh_token_reused', message: 'reused' } })
        : json(401, { error: { code: 'unauthenticated', message: 'expired' } }),
    )
    configureClient({ fetch })
    const store = useAuthStore()
    const onAuthLost = wire(store)
    await expect(http.get('/api/v1/users/me')).rejects.toMatchObject({ status: 401 })
    expect(onAuthLost).toHaveBeenCalledTimes(1)
    expect(store.isLoggedIn).toBe(false)
    expect(localStorage.getItem(STORAGE_KEY)).toBeNull()
  })

  it('adopts the pair another tab already rotated instead of spending the old refresh token', async () => {
    seed('expired', 'R0')
    const store = useAuthStore()
    const { fetch, calls } = fakeFetch(() => json(500, {}))
    configureClient({ fetch })
    wire(store)
    // Another tab refreshed meanwhile and stored the new pair.
    seed('A9', 'R9')
    expect(await store.refresh()).toBe(true)
    expect(store.accessToken).toBe('A9')
    expect(calls).toHaveLength(0)
  })

  it('keeps the session on a network error during refresh (try again later)', async () => {
    seed('expired', 'R0')
    configureClient({ fetch: (() => Promise.reject(new TypeError('offline'))) as unknown as typeof fetch, notify: () => {} })
    const store = useAuthStore()
    await expect(store.refresh()).rejects.toMatchObject({ code: 'network_error' })
    expect(store.isLoggedIn).toBe(true)
  })

  it('logout revokes the refresh token and forgets the session', async () => {
    seed('A', 'R')
    const { fetch, calls } = fakeFetch(() => new Response(null, { status: 204 }))
    configureClient({ fetch })
    const store = useAuthStore()
    await store.logout()
    expect(calls[0].url).toBe('/api/v1/auth/logout')
    expect(calls[0].body).toEqual({ refresh_token: 'R' })
    expect(store.isLoggedIn).toBe(false)
    expect(localStorage.getItem(STORAGE_KEY)).toBeNull()
  })
})
