import { beforeEach, describe, expect, it } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import ElementPlus from 'element-plus'
import { configureClient } from '../src/api/client'
import { makeI18n } from '../src/i18n'
import QuotasView from '../src/views/admin/QuotasView.vue'
import { fakeFetch, json, type Call } from './helpers'

const WORKSPACES = [
  { id: 'ws-admin', name: 'admin', slug: 'admin', is_personal: true, created_at: '2026-03-01T12:00:00Z', role: 'owner' },
  { id: 'ws-bob', name: 'Bob lab', slug: 'bob-lab', is_personal: false, created_at: '2026-03-02T12:00:00Z', role: null },
]
const UNLIMITED = { max_gpus: null, max_environments: null, max_cpu_cores: null, max_memory_gib: null, max_storage_gib: null }
const NO_USAGE = { gpus: 0, environments: 0, cpu_cores: 0, memory_gib: 0, storage_gib: 0 }

const BOB = { id: 'u-bob', username: 'bob', email: 'bob@example.com', display_name: '', is_active: true, is_admin: false, created_at: '2026-03-01T12:00:00Z', last_login_at: null }
const CAP = {
  user_id: 'u-bob', username: 'bob', max_gpus: 8, max_environments: 20, max_cpu_cores: 128, max_memory_gib: 1024,
  max_storage_gib: 1000, max_workspaces: 5, owned_workspaces: 2, is_default: true, usage: { ...NO_USAGE, gpus: 3 },
}

function input(wrapper: ReturnType<typeof mount>, id: string) {
  const el = wrapper.find(`[data-testid="${id}"]`)
  return el.element.tagName === 'INPUT' ? el : el.find('input')
}

function setup(locale: 'en' | 'zh-CN' = 'en') {
  const { fetch, calls } = fakeFetch((c: Call) => {
    const url = new URL(c.url, 'http://x')
    if (url.pathname === '/api/v1/workspaces') {
      const term = (url.searchParams.get('search') ?? '').toLowerCase()
      const items = WORKSPACES.filter((w) => w.name.toLowerCase().includes(term) || w.slug.includes(term))
      return json(200, { items, total: term ? items.length : 45 })
    }
    if (url.pathname === '/api/v1/users') {
      return json(200, { items: [BOB], total: 1 })
    }
    if (url.pathname === '/api/v1/users/u-bob/quota') {
      if (c.method === 'PUT') return json(200, { ...CAP, ...(c.body as object), is_default: false })
      if (c.method === 'DELETE') return json(200, CAP)
      return json(200, CAP)
    }
    if (url.pathname === '/api/v1/workspaces/ws-bob/quota') {
      return c.method === 'PUT'
        ? json(200, { ...UNLIMITED, ...(c.body as object), usage: NO_USAGE })
        : json(200, { ...UNLIMITED, max_gpus: 2, usage: { ...NO_USAGE, gpus: 1 } })
    }
    return json(404, { error: { code: 'not_found', message: 'no such resource' } })
  })
  configureClient({ fetch, auth: null, notify: () => {} })
  const wrapper = mount(QuotasView, { global: { plugins: [createPinia(), makeI18n(locale), ElementPlus] } })
  return { wrapper, calls }
}

describe('admin workspace quotas page', () => {
  beforeEach(() => setActivePinia(createPinia()))

  it('lists every workspace on the platform, paged, including ones the admin is not in', async () => {
    const { wrapper, calls } = setup()
    await flushPromises()
    const list = new URL(calls.find((c) => new URL(c.url, 'http://x').pathname === '/api/v1/workspaces')!.url, 'http://x')
    expect(list.pathname).toBe('/api/v1/workspaces')
    expect(Object.fromEntries(list.searchParams)).toEqual({ all: 'true', limit: '20', offset: '0' })
    const table = wrapper.find('[data-testid="quota-workspaces"]').text()
    expect(table).toContain('Bob lab')
    expect(table).toContain('Not a member')
    expect(table).toContain('Owner')
    expect(wrapper.find('[data-testid="quota-pages"]').exists()).toBe(true) // 45 > one page of 20
  })

  it('searches by name and sends the term with all=true', async () => {
    const { wrapper, calls } = setup()
    await flushPromises()
    await input(wrapper, 'quota-search').setValue('bob')
    await input(wrapper, 'quota-search').trigger('keyup', { key: 'Enter' })
    await flushPromises()
    const last = new URL(calls[calls.length - 1].url, 'http://x')
    expect(last.searchParams.get('all')).toBe('true')
    expect(last.searchParams.get('search')).toBe('bob')
    expect(wrapper.findAll('[data-testid="quota-workspaces"] .el-table__row')).toHaveLength(1)
  })

  it("edits another user's workspace quota", async () => {
    const { wrapper, calls } = setup()
    await flushPromises()
    await wrapper.find('[data-testid="quota-edit-bob-lab"]').trigger('click')
    await flushPromises()
    expect(wrapper.find('[data-testid="quota-selected"]').text()).toContain('Bob lab')
    await input(wrapper, 'quota-max_gpus').setValue('4')
    await wrapper.find('[data-testid="quota-save"]').element.closest('form')!.dispatchEvent(new Event('submit'))
    await flushPromises()
    const put = calls.find((c) => c.method === 'PUT')
    expect(put?.url).toBe('/api/v1/workspaces/ws-bob/quota')
    expect(put?.body).toEqual({ ...UNLIMITED, max_gpus: 4 })
  })

  it("shows and sets a user's cap over the workspaces they own", async () => {
    const { wrapper, calls } = setup()
    await flushPromises()
    expect(wrapper.find('[data-testid="cap-users"]').text()).toContain('bob@example.com')
    await wrapper.find('[data-testid="cap-edit-bob"]').trigger('click')
    await flushPromises()
    expect(wrapper.find('[data-testid="cap-selected"]').text()).toContain('bob')
    expect(wrapper.find('[data-testid="cap-source"]').text()).toContain('Platform default')
    expect(wrapper.find('[data-testid="cap-owned"]').text()).toContain('2 / 5')
    await input(wrapper, 'cap-max_gpus').setValue('2')
    await input(wrapper, 'cap-max_workspaces').setValue('1')
    await wrapper.find('[data-testid="cap-save"]').element.closest('form')!.dispatchEvent(new Event('submit'))
    await flushPromises()
    const put = calls.find((c) => c.method === 'PUT')
    expect(put?.url).toBe('/api/v1/users/u-bob/quota')
    expect(put?.body).toEqual({
      max_gpus: 2, max_environments: 20, max_cpu_cores: 128, max_memory_gib: 1024, max_storage_gib: 1000, max_workspaces: 1,
    })
    expect(wrapper.find('[data-testid="cap-source"]').text()).toContain('Set by an admin')
    await wrapper.find('[data-testid="cap-reset"]').trigger('click')
    await flushPromises()
    expect(calls.some((c) => c.method === 'DELETE' && c.url === '/api/v1/users/u-bob/quota')).toBe(true)
    expect(wrapper.find('[data-testid="cap-source"]').text()).toContain('Platform default')
  })

  it('speaks Chinese', async () => {
    const { wrapper } = setup('zh-CN')
    await flushPromises()
    const text = wrapper.text()
    expect(text).toContain('非成员')
    expect(text).toContain('设置配额')
    expect(text).toContain('用户总配额')
  })
})
