import { beforeEach, describe, expect, it, vi } from 'vitest'
import { ApiError, configureClient, describeError, http } from '../src/api/client'
import { makeI18n, translate } from '../src/i18n'
import { fakeFetch, json } from './helpers'

const i18n = makeI18n('en')
const tr = (key: string, params?: Record<string, unknown>) => translate(key, params, i18n)

describe('API client', () => {
  let notify: ReturnType<typeof vi.fn<(message: string) => void>>
  beforeEach(() => {
    notify = vi.fn<(message: string) => void>()
    configureClient({ auth: null, notify, translate: tr })
  })

  it('turns the error envelope into an ApiError and shows a readable message', async () => {
    const { fetch } = fakeFetch(() =>
      json(409, { error: { code: 'quota_exceeded', message: 'workspace quota exceeded for gpus', details: { violations: [{ resource: 'gpus', limit: 2, used: 2, requested: 1 }] } } }, { 'X-Request-ID': 'abc' }),
    )
    configureClient({ fetch })
    const err = (await http.post('/api/v1/environments', {}).catch((e) => e)) as ApiError
    expect(err).toBeInstanceOf(ApiError)
    expect(err.status).toBe(409)
    expect(err.code).toBe('quota_exceeded')
    expect(err.requestId).toBe('abc')
    expect(notify).toHaveBeenCalledTimes(1)
    expect(notify.mock.calls[0][0]).toBe('Workspace quota exceeded. GPUs: 2 used + 1 requested exceeds the limit of 2')
  })

  it("says when it is an owner's cap across workspaces, not the workspace's quota", () => {
    const err = new ApiError(409, {
      code: 'quota_exceeded', message: 'quota of bob across the workspaces they own exceeded for gpus',
      details: { scope: 'user', username: 'bob', violations: [{ resource: 'gpus', limit: 1, used: 1, requested: 1 }] },
    })
    expect(describeError(err, tr)).toBe(
      'The quota of bob across the workspaces they own is exceeded. GPUs: 1 used + 1 requested exceeds the limit of 1',
    )
  })

  it('names the invalid fields of a validation error', () => {
    const err = new ApiError(422, {
      code: 'validation_error',
      message: 'username: bad',
      details: { errors: [{ loc: ['body', 'username'], msg: 'String should match pattern' }, { loc: ['body', 'password'], msg: 'too short' }] },
    })
    expect(describeError(err, tr)).toBe('Invalid input: username: String should match pattern; password: too short')
  })

  it('uses the translation for known codes, the server message for unknown ones, in the current locale', () => {
    expect(describeError(new ApiError(401, { code: 'invalid_credentials', message: 'invalid username or password' }), tr)).toBe('Wrong username or password.')
    expect(describeError(new ApiError(409, { code: 'brand_new_code', message: 'Something specific' }), tr)).toBe('Something specific')
    expect(describeError(new ApiError(409, { code: 'invalid_state', message: 'environment is running' }), tr)).toBe(
      'Not possible in the current state. environment is running',
    )
    const zh = makeI18n('zh-CN')
    expect(describeError(new ApiError(401, { code: 'invalid_credentials', message: 'x' }), (k, p) => translate(k, p, zh))).toBe('用户名或密码错误。')
  })

  it('maps a network failure to network_error', async () => {
    configureClient({ fetch: (() => Promise.reject(new TypeError('Failed to fetch'))) as unknown as typeof fetch })
    const err = (await http.get('/api/v1/users/me').catch((e) => e)) as ApiError
    expect(err.code).toBe('network_error')
    expect(err.status).toBe(0)
    expect(notify).toHaveBeenCalledWith('The server cannot be reached. Check your connection.')
  })

  it('asks again for a read whose connection dropped, but never repeats a write', async () => {
    let failures = 1
    const { fetch, calls } = fakeFetch(() => {
      if (failures-- > 0) return Promise.reject(new TypeError('net::ERR_NETWORK_CHANGED'))
      return json(200, { ok: true })
    })
    configureClient({ fetch })
    expect(await http.get('/api/v1/users/me')).toEqual({ ok: true })
    expect(calls).toHaveLength(2)
    expect(notify).not.toHaveBeenCalled()

    failures = 1
    const err = (await http.delete('/api/v1/environments/e1').catch((e) => e)) as ApiError
    expect(err.code).toBe('network_error')
    expect(calls).toHaveLength(3) // the DELETE went once
  })

  it('keeps quiet for the statuses the caller handles, and detects a missing route', async () => {
    const { fetch } = fakeFetch(() => json(404, { error: { code: 'not_found', message: 'no such resource', details: {} } }))
    configureClient({ fetch })
    const err = (await http.get('/api/v1/gpu-types', { quiet: [404] }).catch((e) => e)) as ApiError
    expect(err.isMissingRoute).toBe(true)
    expect(notify).not.toHaveBeenCalled()
  })

  it('handles a non-JSON error body', async () => {
    configureClient({ fetch: (async () => new Response('<html>bad gateway</html>', { status: 502, statusText: 'Bad Gateway' })) as typeof fetch })
    const err = (await http.get('/api/v1/x').catch((e) => e)) as ApiError
    expect(err.status).toBe(502)
    expect(err.code).toBe('http_502')
    expect(notify).toHaveBeenCalledWith('Bad Gateway')
  })

  it('sends same-origin credentials and no token, CSRF only on state-changing requests, and parses bodies', async () => {
    const { fetch, calls } = fakeFetch((c) => (c.method === 'DELETE' ? new Response(null, { status: 204 }) : json(200, { ok: true })))
    configureClient({
      fetch,
      auth: { getCsrfToken: () => 'CSRF', refresh: async () => false, onAuthLost: () => {} },
    })
    expect(await http.get('/api/v1/users/me', { query: { limit: 5, search: '', x: undefined } })).toEqual({ ok: true })
    await http.post('/api/v1/users/me/ssh-keys', { public_key: 'k' })
    expect(await http.delete('/api/v1/users/me/ssh-keys/1')).toBeUndefined()
    expect(calls[0].url).toBe('/api/v1/users/me?limit=5')
    expect(calls[0].headers.Authorization).toBeUndefined()
    expect(calls[0].headers['X-CSRF-Token']).toBeUndefined()
    expect(calls[0].credentials).toBe('same-origin')
    expect(calls[1].headers['X-CSRF-Token']).toBe('CSRF')
    expect(calls[1].headers['Content-Type']).toBe('application/json')
    expect(calls[1].body).toEqual({ public_key: 'k' })
    expect(calls[2].headers['X-CSRF-Token']).toBe('CSRF')
  })

  it('on 401 refreshes once and retries; when refresh fails the session is lost', async () => {
    let token = 'old'
    // The cookie jar stands in for the browser's: refresh renews the (httpOnly) cookie.
    const { fetch, calls } = fakeFetch(() => (token === 'new' ? json(200, { id: 'u' }) : json(401, { error: { code: 'unauthenticated', message: 'expired' } })))
    const onAuthLost = vi.fn()
    const refresh = vi.fn(async () => {
      token = 'new'
      return true
    })
    configureClient({ fetch, auth: { getCsrfToken: () => null, refresh, onAuthLost } })
    expect(await http.get('/api/v1/users/me')).toEqual({ id: 'u' })
    expect(refresh).toHaveBeenCalledTimes(1)
    expect(calls).toHaveLength(2)

    token = 'old'
    refresh.mockImplementation(async () => false)
    const err = (await http.get('/api/v1/users/me').catch((e) => e)) as ApiError
    expect(err.status).toBe(401)
    expect(onAuthLost).toHaveBeenCalledTimes(1)
    expect(notify).toHaveBeenCalledWith('Your session has ended; please log in again.')
  })

  it('does not refresh for requests made without auth (login with a wrong password)', async () => {
    const { fetch } = fakeFetch(() => json(401, { error: { code: 'invalid_credentials', message: 'nope' } }))
    const refresh = vi.fn(async () => true)
    configureClient({ fetch, auth: { getCsrfToken: () => null, refresh, onAuthLost: () => {} } })
    await expect(http.post('/api/v1/auth/login', {}, { auth: false })).rejects.toBeInstanceOf(ApiError)
    expect(refresh).not.toHaveBeenCalled()
    expect(notify).toHaveBeenCalledWith('Wrong username or password.')
  })
})
