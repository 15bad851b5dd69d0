import { beforeEach, describe, expect, it } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { configureClient } from '../src/api/client'
import { useEnvironmentsStore } from '../src/stores/environments'
import { fakeFetch, json } from './helpers'

const env = (id: string, status: string, created_at = '2026-01-01T00:00:00Z') => ({ id, name: id, status, created_at, workspace_id: 'w', gpu_count: 0 })

describe('environments store', () => {
  beforeEach(() => setActivePinia(createPinia()))

  it('applies pushed events: status changes in place, deleted ones disappear', async () => {
    const { fetch } = fakeFetch(() => json(200, { items: [env('a', 'starting'), env('b', 'running', '2026-02-01T00:00:00Z')], total: 2 }))
    configureClient({ fetch, auth: null, notify: () => {} })
    const store = useEnvironmentsStore()
    await store.load()
    expect(store.available).toBe(true)
    expect(store.list.map((e) => e.id)).toEqual(['b', 'a'])
    store.handleMessage(JSON.stringify({ type: 'environment', environment: { ...env('a', 'running') } }))
    expect(store.byId.a.status).toBe('running')
    store.handleMessage(JSON.stringify({ type: 'environment', environment: { ...env('b', 'deleted') } }))
    expect(store.byId.b).toBeUndefined()
    store.handleMessage('not json')
    store.handleMessage(JSON.stringify({ type: 'heartbeat' }))
    expect(store.list).toHaveLength(1)
  })

  it('marks the feature unavailable when the API answers 404', async () => {
    const { fetch } = fakeFetch(() => json(404, { error: { code: 'not_found', message: 'no such resource' } }))
    configureClient({ fetch, auth: null, notify: () => {} })
    const store = useEnvironmentsStore()
    await store.load()
    expect(store.available).toBe(false)
  })
})
