import { beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { configureClient, http } from '../src/api/client'
import { isAppAuthorizePath, useAuthStore } from '../src/stores/auth'
import { fakeFetch, json } from './helpers'

const ALICE = {
  id: 'u1', username: 'alice', email: 'alice@example.com', display_name: '', is_active: true, is_admin: false,
  created_at: '2026-01-01T00:00:00Z', last_login_at: null,
}

function session(csrf: string, expiresIn = 900) {
  return { csrf_token: csrf, expires_in: expiresIn, user: ALICE }
}

function wire(store: ReturnType<typeof useAuthStore>, onAuthLost = vi.fn()) {
  configureClient({
    notify: () => {},
    auth: { getCsrfToken: () => store.csrfToken, refresh: () => store.refresh(), onAuthLost },
  })
  return onAuthLost
}

describe('auth store (cookie session)', () => {
  beforeEach(() => {
    localStorage.clear()
    sessionStorage.clear()
    setActivePinia(createPinia())
  })

  it('logs in through the cookie endpoint, keeps only the CSRF token in memory, stores nothing', async () => {
    const { fetch, calls } = fakeFetch((c) => (c.url === '/api/v1/auth/session' && c.method === 'POST' ? json(200, session('C1')) : json(200, { ok: true })))
    configureClient({ fetch })
    const store = useAuthStore()
    wire(store)
    expect(store.isLoggedIn).toBe(false)
    await store.login('alice', 'pw')
    expect(store.user?.username).toBe('alice')
    expect(store.csrfToken).toBe('C1')
    await http.post('/api/v1/users/me/ssh-keys', { public_key: 'k' })
    expect(calls[1].headers.Authorization).toBeUndefined()
    expect(calls[1].headers['X-CSRF-Token']).toBe('C1')
    expect(calls[1].credentials).toBe('same-origin')
    expect(localStorage.length).toBe(0)
    expect(sessionStorage.length).toBe(0)
  })

  it('after a reload asks the server for the session (GET), and refreshes by cookie when the access cookie expired', async () => {
    let expired = true
    const { fetch, calls } = fakeFetch((c) => {
      if (c.url === '/api/v1/auth/session' && c.method === 'GET') return expired ? json(401, { error: { code: 'no_session', message: 'x' } }) : json(200, session('C2'))
      if (c.url === '/api/v1/auth/session/refresh') return json(200, session('C3'))
      return json(404, {})
    })
    configureClient({ fetch })
    const store = useAuthStore()
    wire(store)
    expect((await store.ensureUser())?.username).toBe('alice')
    expect(store.csrfToken).toBe('C3')
    expect(calls.map((c) => `${c.method} ${c.url}`)).toEqual([
      'GET /api/v1/auth/session', 'GET /api/v1/auth/session', 'POST /api/v1/auth/session/refresh',
    ])
    expect(calls[2].body).toEqual({})

    setActivePinia(createPinia())
    expired = false
    const again = useAuthStore()
    expect((await again.ensureUser())?.username).toBe('alice')
    expect(again.csrfToken).toBe('C2')
  })

  it('single-flight: concurrent 401s share ONE refresh, and every request is retried', async () => {
    let refreshes = 0
    let renewed = false
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const { fetch, calls } = fakeFetch(async (c) => {
      if (c.url === '/api/v1/auth/session') return json(401, { error: { code: 'no_session', message: 'x' } })
      if (c.url === '/api/v1/auth/session/refresh') {
        refreshes += 1
        await gate
        renewed = true
        return json(200, session(`C${refreshes}`))
      }
      return renewed ? json(200, { url: c.url }) : json(401, { error: { code: 'unauthenticated', message: 'expired' } })
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
    expect(calls.filter((c) => c.url.endsWith('/session/refresh'))).toHaveLength(1)
  })

  it('a failed refresh clears the session and reports it lost', async () => {
    const { fetch } = fakeFetch((c) =>
      c.url.includes('/auth/session') ? json(401, { error: { code: 'refresh_token_reused', message: 'reused' } }) : json(401, { error: { code: 'unauthenticated', message: 'expired' } }),
    )
    configureClient({ fetch })
    const store = useAuthStore()
    store.adopt(session('C'))
    const onAuthLost = wire(store)
    await expect(http.get('/api/v1/users/me')).rejects.toMatchObject({ status: 401 })
    expect(onAuthLost).toHaveBeenCalledTimes(1)
    expect(store.isLoggedIn).toBe(false)
    expect(store.csrfToken).toBeNull()
  })

  it('adopts the session another tab already renewed instead of spending the refresh cookie again', async () => {
    const { fetch, calls } = fakeFetch((c) => (c.url === '/api/v1/auth/session' ? json(200, session('C9')) : json(500, {})))
    configureClient({ fetch })
    const store = useAuthStore()
    wire(store)
    expect(await store.refresh()).toBe(true)
    expect(store.csrfToken).toBe('C9')
    expect(calls.map((c) => c.url)).toEqual(['/api/v1/auth/session'])
  })

  it('keeps the session on a network error during refresh (try again later)', async () => {
    configureClient({ fetch: (() => Promise.reject(new TypeError('offline'))) as unknown as typeof fetch, notify: () => {} })
    const store = useAuthStore()
    store.adopt(session('C'))
    await expect(store.refresh()).rejects.toMatchObject({ code: 'network_error' })
    expect(store.isLoggedIn).toBe(true)
  })

  it('logout deletes the cookie session and forgets the user', async () => {
    const { fetch, calls } = fakeFetch(() => new Response(null, { status: 204 }))
    configureClient({ fetch })
    const store = useAuthStore()
    store.adopt(session('C'))
    await store.logout()
    expect(calls[0].url).toBe('/api/v1/auth/session')
    expect(calls[0].method).toBe('DELETE')
    expect(store.isLoggedIn).toBe(false)
  })

  it('only the app handshake may be a login target outside the console', () => {
    expect(isAppAuthorizePath('/api/v1/environments/0b8f2a3c-1d2e-4f5a-8b9c-0d1e2f3a4b5c/apps/jupyter/authorize?next=%2F')).toBe(true)
    expect(isAppAuthorizePath('/api/v1/users/me/tokens')).toBe(false)
    expect(isAppAuthorizePath('https://evil.example/api/v1/environments/x/apps/jupyter/authorize')).toBe(false)
    expect(isAppAuthorizePath('//evil.example/')).toBe(false)
  })
})
